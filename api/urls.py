"""URLs of the REST API and the Kamailio rtjson endpoint (mounted at /api/v1/)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import SimpleRouter

from api import blocklists as blocklists_api
from api import login, views
from api import rating as rating_api
from api import versions as versions_api

router = SimpleRouter()
router.trailing_slash = "/?"  # /api/v1/trunks and /api/v1/trunks/ alike (no POST redirect)
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register("tenant-sources", views.TenantSourceViewSet, basename="tenantsource")
router.register("carriers", views.CarrierViewSet, basename="carrier")
router.register("trunks", views.TrunkViewSet, basename="trunk")
router.register("routing-plans", views.RoutingPlanViewSet, basename="routingplan")
router.register("customers", views.CustomerViewSet, basename="customer")
router.register("schedules", views.ScheduleViewSet, basename="schedule")
router.register("prefixes", views.DialPrefixViewSet, basename="dialprefix")
router.register("rate-decks", rating_api.RateDeckViewSet, basename="ratedeck")
router.register("blocklists", blocklists_api.BlocklistViewSet, basename="blocklist")
router.register(
    "blocklist-entries", blocklists_api.BlocklistEntryViewSet, basename="blocklistentry"
)
# Staged plans, beside the plans themselves: routing-plans/{id}/versions, diff,
# publish, rollback, run-tests, impact (only these detail actions, no list or detail).
router.register("routing-plans", versions_api.PlanVersionsViewSet, basename="planversions")
router.register("route-tests", versions_api.RouteTestViewSet, basename="routetest")
router.register("decisions", versions_api.DecisionViewSet, basename="decision")

urlpatterns = [
    path("kamailio/rtjson", views.RtjsonView.as_view(), name="kamailio-rtjson"),
    path("kamailio/events", views.OutcomeEventsView.as_view(), name="kamailio-events"),
    path("simulate", views.SimulateView.as_view(), name="simulate"),
    path("rates", rating_api.RateView.as_view(), name="rates"),
    # The same views with a trailing slash, left out of the schema.
    path("kamailio/rtjson/", views.RtjsonView.as_view(schema=None)),
    path("kamailio/events/", views.OutcomeEventsView.as_view(schema=None)),
    path("simulate/", views.SimulateView.as_view(schema=None)),
    path("auth/token", login.LoginView.as_view(), name="auth-token"),
    path("auth/logout", login.LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all", login.LogoutAllView.as_view(), name="auth-logout-all"),
    # The API's map is for its users: the schema needs a token or a session, and the
    # docs page sends a browser to the admin's login first.
    path(
        "schema",
        SpectacularAPIView.as_view(
            authentication_classes=views.USER_AUTHENTICATION, permission_classes=[IsAuthenticated]
        ),
        name="schema",
    ),
    path(
        "docs",
        login_required(SpectacularSwaggerView.as_view(url_name="schema"), login_url="admin:login"),
        name="docs",
    ),
    *router.urls,
]
