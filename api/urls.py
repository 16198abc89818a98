"""URLs of the REST API and the Kamailio rtjson endpoint."""

urlpatterns: list = []
