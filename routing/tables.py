"""Route tables: where the resolver reads tenants, prefixes and targets from.

`DatabaseRouteTable` answers each lookup with one indexed query, so a decision
costs three queries whatever the size of the table (source → tenant, candidate
prefixes of the number, targets of the winning prefix). Because it keeps no copy,
a change is live for the very next call in every process.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from routing.models import DialPrefix, RouteTarget
from routing.resolver import PrefixRow, RouteTable, RoutingDefaults, TargetRow, TenantRef
from tenants.models import Tenant, TenantSource
from tenants.networks import IPAddress, containing_networks, prefix_length

_TENANT_FIELDS = ("id", "slug", "name", "is_active")
_PREFIX_FIELDS = (
    "id",
    "prefix",
    "min_length",
    "max_length",
    "action",
    "routing_mode",
    "reject_code",
    "reject_reason",
    "is_active",
    "description",
)
_TARGET_FIELDS = (
    "id",
    "priority",
    "weight",
    "trunk_id",
    "trunk__name",
    "trunk__is_active",
    "trunk__carrier__name",
    "trunk__carrier__is_active",
    "trunk__host",
    "trunk__port",
    "trunk__transport",
    "trunk__outbound_proxy",
    "trunk__socket",
    "trunk__path",
    "trunk__tech_prefix",
    "trunk__strip_digits",
    "trunk__from_display",
    "trunk__from_uri",
    "trunk__rewrite_to",
    "trunk__extra_headers",
    "trunk__branch_flags",
    "trunk__fr_timer",
    "trunk__fr_inv_timer",
)


class DatabaseRouteTable:
    """Reads every decision straight from the database: always current, O(1) queries."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def tenant_by_source(self, address: IPAddress) -> tuple[TenantRef, str] | None:
        rows = (
            TenantSource.objects.using(self.using)
            .filter(network__in=containing_networks(address))
            .values_list("network", *(f"tenant__{name}" for name in _TENANT_FIELDS))
        )
        best = max(rows, key=lambda row: prefix_length(row[0]), default=None)
        if best is None:
            return None
        return TenantRef(*best[1:]), best[0]

    def tenant_by_slug(self, slug: str) -> TenantRef | None:
        row = (
            Tenant.objects.using(self.using).filter(slug=slug).values_list(*_TENANT_FIELDS).first()
        )
        return TenantRef(*row) if row else None

    def prefixes(self, tenant_id: int, candidates: list[str]) -> list[PrefixRow]:
        rows = (
            DialPrefix.objects.using(self.using)
            .filter(tenant_id=tenant_id, prefix__in=candidates)
            .order_by()
            .values_list(*_PREFIX_FIELDS)
        )
        return [PrefixRow(*row) for row in rows]

    def targets(self, prefix_id: int) -> list[TargetRow]:
        rows = (
            RouteTarget.objects.using(self.using)
            .filter(prefix_id=prefix_id)
            .order_by()
            .values_list(*_TARGET_FIELDS)
        )
        return [TargetRow(*row) for row in rows]


def get_route_table() -> RouteTable:
    """The route table named by settings.ROUTING_TABLE: "database", "compiled" or a dotted path."""
    name = settings.ROUTING_TABLE
    if name == "database":
        return DatabaseRouteTable()
    if name == "compiled":
        from routing.compiled import compiled_route_table  # one per process, kept current

        return compiled_route_table()
    return import_string(name)()


def routing_defaults() -> RoutingDefaults:
    """The platform's defaults, read from settings at call time."""
    return RoutingDefaults(
        fr_timer=settings.ROUTING_FR_TIMER or None,
        fr_inv_timer=settings.ROUTING_FR_INV_TIMER or None,
    )
