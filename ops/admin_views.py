"""Admin pages of the operations app: the route simulator, the recent-changes list, the
number box's answer and the superusers' overview.

All are plain views wrapped by admin.site.admin_view (staff login, CSRF, no caching)
and rendered inside the admin's layout; ops/urls.py mounts them under /admin/.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from kamailio.rtjson import to_rtjson
from ops import overview
from ops.history import kinds_choices, recent_changes
from ops.numberbox import NumberBoxError, NumberBoxForm, lookup_every_tenant
from ops.simulator import SimulatorForm
from routing.simulation import SimulationRefused, simulate
from tenants.models import Tenant
from tenants.scoping import EVERYTHING, user_scope

CHANGES_PER_PAGE = 50
MAX_PAGES = 20  # beyond 1,000 changes, the per-object history pages are the tool


def _scope_or_403(request: HttpRequest):
    scope = user_scope(request.user)
    if scope is None:
        raise PermissionDenied("This account operates no tenant.")
    return scope


def simulator(request: HttpRequest) -> HttpResponse:
    """GET form: the query string is the call, so a simulation is a link one can share."""
    _scope_or_403(request)
    bound = "callee" in request.GET
    form = SimulatorForm(
        request.GET if bound else None, initial=request.GET.dict(), user=request.user
    )
    result = None
    if bound and form.is_valid():
        try:
            result = simulate(form.call_request(), user=request.user, pin=form.pin)
        except SimulationRefused as refused:  # a version that is not kept, say
            form.add_error(None, str(refused))
    context = {
        **admin.site.each_context(request),
        "title": "Route simulator",
        "form": form,
        "result": result,
        "trace": form.explain(result.decision.trace) if result else [],
        "rtjson": json.dumps(to_rtjson(result.decision), indent=2, ensure_ascii=False)
        if result
        else "",
    }
    return TemplateResponse(request, "admin/ops/simulator.html", context)


def recent_changes_view(request: HttpRequest) -> HttpResponse:
    """Who changed what, newest first, across the user's route table."""
    scope = _scope_or_403(request)
    tenants = list(Tenant.objects.all()) if scope is EVERYTHING else []
    tenant = next((t for t in tenants if t.slug == request.GET.get("tenant")), None)
    kinds = dict(kinds_choices())
    kind = request.GET.get("kind") if request.GET.get("kind") in kinds else None
    page = min(max(_int(request.GET.get("page")) or 1, 1), MAX_PAGES)
    prefix_id = _int(request.GET.get("prefix"))
    changes = recent_changes(
        request.user,
        tenant_id=tenant.pk if tenant else None,
        kinds=[kind] if kind else None,
        prefix_id=prefix_id,
        limit=CHANGES_PER_PAGE + 1,
        offset=(page - 1) * CHANGES_PER_PAGE,
    )
    context = {
        **admin.site.each_context(request),
        "title": "Changes of one route" if prefix_id else "Recent changes",
        "changes": changes[:CHANGES_PER_PAGE],
        "has_next": len(changes) > CHANGES_PER_PAGE and page < MAX_PAGES,
        "page": page,
        "tenants": tenants,
        "tenant": tenant,
        "kinds": kinds,
        "kind": kind,
        "prefix_id": prefix_id,
        "show_tenant": scope is EVERYTHING,
    }
    return TemplateResponse(request, "admin/ops/recent_changes.html", context)


def number_box(request: HttpRequest) -> HttpResponse:
    """GET ?n=NUMBER[&tenant=SLUG][&customer=ID]: the header box's answer (ops.numberbox);
    for a superuser naming no tenant, one line per tenant, each linking to its detail."""
    _scope_or_403(request)
    bound = "n" in request.GET
    form = NumberBoxForm(request.GET if bound else None, user=request.user)
    found, every_tenant = None, []
    if bound and form.is_valid():
        try:
            if form.wants_every_tenant():
                every_tenant = lookup_every_tenant(user=request.user, number=form.cleaned_data["n"])
            else:
                found = form.lookup()
        except NumberBoxError as exc:
            form.add_error(None, str(exc))
    # A superuser with a single tenant gets its detail at once.
    if len(every_tenant) == 1 and every_tenant[0].found is not None:
        found, every_tenant = every_tenant[0].found, []
    number = found.number if found else ""
    if every_tenant:
        number = form.cleaned_data["n"].strip()
    context = {
        **admin.site.each_context(request),
        "title": f"Number {number}" if number else "Find a number",
        "form": form,
        "found": found,
        "every_tenant": every_tenant,
        "number": number,
        "number_box_value": request.GET.get("n", ""),
    }
    return TemplateResponse(request, "admin/ops/number_box.html", context)


def overview_view(request: HttpRequest) -> HttpResponse:
    """Every tenant at a glance (ops.overview): superusers only."""
    if not request.user.is_superuser:
        raise PermissionDenied("The overview covers every tenant: superusers only.")
    context = {
        **admin.site.each_context(request),
        "title": "Overview of the tenants",
        "rows": overview.tenant_rows(user=request.user),
        "traffic_hours": overview.TRAFFIC_HOURS,
    }
    return TemplateResponse(request, "admin/ops/overview.html", context)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
