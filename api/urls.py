"""URLs of the REST API and the Kamailio rtjson endpoint (mounted at /api/v1/)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import SimpleRouter

from api import views

router = SimpleRouter()
router.trailing_slash = "/?"  # /api/v1/trunks and /api/v1/trunks/ alike (no POST redirect)
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register("tenant-sources", views.TenantSourceViewSet, basename="tenantsource")
router.register("carriers", views.CarrierViewSet, basename="carrier")
router.register("trunks", views.TrunkViewSet, basename="trunk")
router.register("prefixes", views.DialPrefixViewSet, basename="dialprefix")

urlpatterns = [
    path("kamailio/rtjson", views.RtjsonView.as_view(), name="kamailio-rtjson"),
    path("simulate", views.SimulateView.as_view(), name="simulate"),
    # The same views with a trailing slash, left out of the schema.
    path("kamailio/rtjson/", views.RtjsonView.as_view(schema=None)),
    path("simulate/", views.SimulateView.as_view(schema=None)),
    path("auth/token", obtain_auth_token, name="auth-token"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    *router.urls,
]
