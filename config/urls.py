"""URL configuration: the admin, the API (api/urls.py) and operations pages (ops/urls.py)."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Kamailio routing"
admin.site.site_title = "Kamailio routing"
admin.site.index_title = "Route tables"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("", include("ops.urls")),
    path("api/v1/", include("api.urls")),
    path("admin/", admin.site.urls),
]
