"""The "Live traffic" admin page: a tenant's calls, ASR and ACD per minute, its trunks
with their health, and the prefixes failing most (docs/traffic.md).

A plain view wrapped by admin.site.admin_view (ops/urls.py mounts it under /admin/).
An operator sees their own tenant; a superuser picks one. A tenant the user may not see
is a 404, the same as one that does not exist. The page refreshes itself: static/ops/
traffic.js fetches the same URL every REFRESH_SECONDS and swaps the live part in.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from outcomes.figures import failing_prefixes, timeline, trunk_traffic
from tenants.models import Tenant
from tenants.scoping import EVERYTHING, user_scope

WINDOWS_HOURS = (1, 3, 6, 24)
DEFAULT_HOURS = 3
# Minutes per sparkline point, by window: 30 to 36 points whatever the window.
SLOT_MINUTES = {1: 2, 3: 5, 6: 10, 24: 60}
REFRESH_SECONDS = 30
FAILING_PREFIXES = 10
SPARK_WIDTH, SPARK_HEIGHT = 120, 24


def chosen_tenant(request: HttpRequest) -> tuple[Tenant | None, list[Tenant]]:
    """The tenant the page shows, and the tenants a superuser may pick from.

    An operator's own tenant (or 404 when another slug is asked for); a superuser's
    choice, or none yet. No access at all: 403, as on the other ops pages.
    """
    scope = user_scope(request.user)
    if scope is None:
        raise PermissionDenied("This account operates no tenant.")
    asked = request.GET.get("tenant") or None
    if scope is EVERYTHING:
        tenants = list(Tenant.objects.order_by("name"))
        if asked is None:
            return None, tenants
        for tenant in tenants:
            if tenant.slug == asked:
                return tenant, tenants
        raise Http404("No such tenant.")
    if asked is not None and asked != scope.slug:
        raise Http404("No such tenant.")
    return scope, []


def window_hours(request: HttpRequest) -> int:
    try:
        hours = int(request.GET.get("hours", DEFAULT_HOURS))
    except ValueError:
        return DEFAULT_HOURS
    return hours if hours in WINDOWS_HOURS else DEFAULT_HOURS


def traffic_view(request: HttpRequest) -> HttpResponse:
    tenant, tenants = chosen_tenant(request)
    hours = window_hours(request)
    now = timezone.now()
    # The window ends with the current (still filling) minute.
    until = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    since = until - dt.timedelta(hours=hours)
    context = {
        **admin.site.each_context(request),
        "title": "Live traffic",
        "tenant": tenant,
        "tenants": tenants,
        "hours": hours,
        "windows": WINDOWS_HOURS,
        "refresh_seconds": REFRESH_SECONDS,
        "now": now,
        "since": since,
    }
    if tenant is not None:
        minutes = timeline(tenant=tenant, since=since, until=until)
        slot_minutes = SLOT_MINUTES[hours]
        trunks = trunk_traffic(
            tenant=tenant, since=since, until=until, now=now, slot_minutes=slot_minutes
        )
        context.update(
            {
                "chart_data": {
                    "t": [int(m.at.timestamp()) for m in minutes],
                    "attempts": [m.attempts for m in minutes],
                    "answered": [m.answered for m in minutes],
                    # No attempts: no ASR and no ACD, a gap in the chart, not a zero.
                    "asr": [None if m.asr is None else round(100 * m.asr, 1) for m in minutes],
                    "acd": [None if m.acd_s is None else round(m.acd_s, 1) for m in minutes],
                },
                "totals": {
                    "attempts": sum(m.attempts for m in minutes),
                    "answered": sum(m.answered for m in minutes),
                },
                "trunks": [(row, sparkline(row.slots)) for row in trunks],
                "slot_minutes": slot_minutes,
                "prefixes": failing_prefixes(
                    tenant=tenant, since=since, until=until, limit=FAILING_PREFIXES
                ),
            }
        )
    return TemplateResponse(request, "admin/ops/traffic.html", context)


def sparkline(values: list[int]) -> str:
    """SVG polyline points for `values`, scaled to SPARK_WIDTH x SPARK_HEIGHT (drawn by
    the template: no script, no image request)."""
    if not values:
        return ""
    top = max(values) or 1
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    return " ".join(
        f"{n * step:.1f},{SPARK_HEIGHT - 1 - (SPARK_HEIGHT - 2) * value / top:.1f}"
        for n, value in enumerate(values)
    )
