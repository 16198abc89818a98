"""URLs of the REST API and the Kamailio rtjson endpoint (mounted at /api/v1/)."""

from __future__ import annotations

from django.urls import re_path

from api import views

urlpatterns = [
    re_path(r"^kamailio/rtjson/?$", views.RtjsonView.as_view(), name="kamailio-rtjson"),
]
