"""The superusers' overview: every tenant's size, its trunks out of service, its last
change and its traffic, on one page.

Counts are one grouped query per kind (not a join of everything, which would multiply
rows); trunks are read once with their health and judged by routing.health.status, the
resolver's rule; the last change is ops.history.recent_changes (the recent-changes
page's own rule) per tenant, one page of one row; traffic is the outcome buckets
(outcomes app) of the last 24 hours, grouped by tenant.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Sum
from django.utils import timezone

from ops.history import Change, recent_changes
from outcomes.models import OutcomeBucket
from routing import health
from routing.models import Customer, DialPrefix, RoutingPlan, Trunk
from tenants.models import Tenant

TRAFFIC_HOURS = 24
OFF_STATES = {"unhealthy": "unhealthy", "forced_down": "forced out of service"}


@dataclass
class TenantRow:
    tenant: Tenant
    customers: int = 0
    plans: int = 0
    prefixes: int = 0
    trunks: int = 0
    trunks_off: list[str] = field(default_factory=list)  # "carrier / trunk (why)"
    last_change: Change | None = None
    attempts: int = 0
    answered: int = 0

    @property
    def asr(self) -> float | None:
        return self.answered / self.attempts if self.attempts else None


def _counts(model, path: str = "tenant_id") -> dict[int, int]:
    return dict(
        model.objects.order_by().values_list(path).annotate(n=Count("pk")).values_list(path, "n")
    )


def tenant_rows(*, user=None, now: dt.datetime | None = None) -> list[TenantRow]:
    """One row per tenant, by name. `user` reads the last changes (a superuser: all)."""
    now = now or timezone.now()
    rows = {t.pk: TenantRow(tenant=t) for t in Tenant.objects.order_by("name")}
    for attribute, counts in (
        ("customers", _counts(Customer)),
        ("plans", _counts(RoutingPlan)),
        ("prefixes", _counts(DialPrefix)),
        ("trunks", _counts(Trunk, "carrier__tenant_id")),
    ):
        for tenant_id, count in counts.items():
            if tenant_id in rows:
                setattr(rows[tenant_id], attribute, count)

    off: dict[int, list[str]] = defaultdict(list)
    for trunk in Trunk.objects.select_related("carrier", "health").order_by(
        "carrier__name", "name"
    ):
        why = _why_off(trunk, now)
        if why:
            off[trunk.carrier.tenant_id].append(f"{trunk.carrier.name} / {trunk.name} ({why})")
    for tenant_id, names in off.items():
        rows[tenant_id].trunks_off = names

    since = now - dt.timedelta(hours=TRAFFIC_HOURS)
    for tenant_id, attempts, answered in (
        OutcomeBucket.objects.filter(minute__gte=since)
        .order_by()
        .values_list("tenant_id")
        .annotate(a=Sum("attempts"), b=Sum("answered"))
        .values_list("tenant_id", "a", "b")
    ):
        rows[tenant_id].attempts, rows[tenant_id].answered = attempts or 0, answered or 0

    if user is not None:
        for row in rows.values():
            found = recent_changes(user, tenant_id=row.tenant.pk, limit=1)
            row.last_change = found[0] if found else None
    return list(rows.values())


def _why_off(trunk: Trunk, now: dt.datetime) -> str:
    if not trunk.is_active:
        return "inactive"
    if not trunk.carrier.is_active:
        return "carrier inactive"
    try:
        row = trunk.health
    except Trunk.health.RelatedObjectDoesNotExist:
        return ""
    return OFF_STATES.get(health.status(row, now), "")
