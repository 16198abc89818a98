"""URLs of the operations pages: health, metrics, and the admin's simulator, changes and
live traffic, and the decision lookup."""

from django.contrib import admin
from django.urls import path

from ops import admin_views, views
from ops.admin.traffic import traffic_view
from ops.admin.versions import decision_lookup_view

app_name = "ops"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/simulator/", admin.site.admin_view(admin_views.simulator), name="simulator"),
    path(
        "admin/recent-changes/",
        admin.site.admin_view(admin_views.recent_changes_view),
        name="recent-changes",
    ),
    path("admin/number/", admin.site.admin_view(admin_views.number_box), name="number-box"),
    path("admin/overview/", admin.site.admin_view(admin_views.overview_view), name="overview"),
    path("admin/traffic/", admin.site.admin_view(traffic_view), name="traffic"),
    path(
        "admin/decision-lookup/",
        admin.site.admin_view(decision_lookup_view),
        name="decision-lookup",
    ),
]
