"""URLs of the call-path server (config.wsgi_rtjson): Kamailio's endpoint, health, metrics.

Nothing else is reachable there: no admin, no logins, no REST API, so no load of
theirs can queue in front of a routing request.
"""

from django.urls import path

from api import views
from ops import views as ops_views

urlpatterns = [
    path("api/v1/kamailio/rtjson", views.RtjsonView.as_view(), name="kamailio-rtjson"),
    path("api/v1/kamailio/rtjson/", views.RtjsonView.as_view(schema=None)),
    path("healthz", ops_views.healthz, name="healthz"),
    path("metrics", ops_views.metrics, name="metrics"),
]
