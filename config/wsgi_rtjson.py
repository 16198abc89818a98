"""WSGI entry point of the call path alone (Kamailio's rtjson, /healthz, /metrics).

    gunicorn -c deploy/gunicorn.conf.py config.wsgi_rtjson

The same settings as config.wsgi, but every request is resolved against
config.urls_rtjson (the rtjson endpoint, /healthz and /metrics). Run it as its own
gunicorn, on its own port, for Kamailio; the admin and the REST API run in another
gunicorn (config.wsgi). A login flood or a heavy API client then occupies the other
pool's workers, never the ones Kamailio waits on (docs/operations.md).
"""

import os

from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

URLCONF = "config.urls_rtjson"


class RtjsonHandler(WSGIHandler):
    def get_response(self, request):
        # Django resolves a request against request.urlconf when it is set.
        request.urlconf = URLCONF
        return super().get_response(request)


def _application() -> RtjsonHandler:
    import django

    django.setup(set_prefix=False)
    return RtjsonHandler()


application = _application()
