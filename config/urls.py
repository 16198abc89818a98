"""URL configuration: the admin and, from their own apps, the API and operations pages."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "Kamailio routing"
admin.site.site_title = "Kamailio routing"
admin.site.index_title = "Route tables"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
]
