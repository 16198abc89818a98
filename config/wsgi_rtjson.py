"""WSGI entry point of the call path alone (Kamailio's rtjson, /healthz, /metrics).

    python manage.py serve_rtjson            # granian, the production server
    gunicorn -c deploy/gunicorn.conf.py config.wsgi_rtjson   # works too, slower

The same settings as config.wsgi. Kamailio's routing requests are answered by
api.fastpath.RtjsonApplication; what it does not take (a bad token or body,
/healthz, /metrics) goes to Django, resolved against config.urls_rtjson: the rtjson
endpoint, /healthz and /metrics, nothing else. Run it as its own server, on its own
port, for Kamailio; the admin and the REST API run in another (config.wsgi). A
login flood or a heavy API client then occupies the other server's workers, never
the ones Kamailio waits on (docs/operations.md).

Each worker process imports this module once: it loads its compiled route table,
rates and blocklists here (up to WARM_UP_SECONDS, then they keep loading in the
background), so its first calls are answered from memory.
"""

import logging
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

WARM_UP_SECONDS = 5.0


def _application():
    import django

    django.setup(set_prefix=False)
    from api.fastpath import CallPathHandler, RtjsonApplication
    from routing.service import warm_up

    for name in warm_up(WARM_UP_SECONDS, freeze=True):
        logging.getLogger("routing").warning(
            "%s not loaded after %.0f s; the database answers until it is", name, WARM_UP_SECONDS
        )
    return RtjsonApplication(CallPathHandler())


application = _application()
