"""The Kamailio wire adapter, shared by both transports (HTTP and EVAPI).

Plain Python, no Django app, no DRF, no sockets: Kamailio's request fields to a
CallRequest (`requests`), a Decision to the rtjson document and the failure
answers (`rtjson`), and the EVAPI event protocol without I/O (`evapi`). The
transports (`api.views`, `evapi_bridge.bridge`) do the I/O around it.
"""
