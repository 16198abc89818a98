"""The database route table: the resolver's rows read straight from the database.

`DatabaseRouteTable` answers each lookup with indexed queries, so a decision costs
three queries whatever the size of the table (source → tenant, candidate prefixes
of the number, the targets of those prefixes). Because it keeps no copy, a change
is live for the very next call in every process. The compiled table
(`routing.compiled`) answers the same protocol from memory.
"""

from __future__ import annotations

from collections import defaultdict

from routing.models import DialPrefix, RouteTarget
from routing.rows import (
    RouteEntry,
    RouteRow,
    TargetLink,
    TargetRow,
    TenantRef,
    TrunkRow,
    builder,
    orm_paths,
)
from tenants.models import Tenant, TenantSource
from tenants.networks import IPAddress, containing_networks, prefix_length

_TENANT_PATHS = orm_paths(TenantRef)
_ROUTE_PATHS = orm_paths(RouteRow)
_LINK_PATHS = orm_paths(TargetLink)
_TRUNK_PATHS = orm_paths(TrunkRow, "trunk__")
_tenant, _route, _link, _trunk = (
    builder(TenantRef),
    builder(RouteRow),
    builder(TargetLink),
    builder(TrunkRow),
)


class DatabaseRouteTable:
    """Reads every decision straight from the database: always current, O(1) queries."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def tenant_by_source(self, address: IPAddress) -> tuple[TenantRef, str] | None:
        rows = (
            TenantSource.objects.using(self.using)
            .filter(network__in=containing_networks(address))
            .values_list("network", *(f"tenant__{path}" for path in _TENANT_PATHS))
        )
        best = max(rows, key=lambda row: prefix_length(row[0]), default=None)
        if best is None:
            return None
        return _tenant(best[1:]), best[0]

    def tenant_by_slug(self, slug: str) -> TenantRef | None:
        row = Tenant.objects.using(self.using).filter(slug=slug).values_list(*_TENANT_PATHS).first()
        return _tenant(row) if row else None

    def routes(self, tenant_id: int, candidates: list[str]) -> list[RouteEntry]:
        rows = [
            _route(values)
            for values in DialPrefix.objects.using(self.using)
            .filter(tenant_id=tenant_id, prefix__in=candidates)
            .order_by()
            .values_list(*_ROUTE_PATHS)
        ]
        if not rows:
            return []
        targets: dict[int, list[TargetRow]] = defaultdict(list)
        width = len(_LINK_PATHS)
        for values in (
            RouteTarget.objects.using(self.using)
            .filter(prefix_id__in=[row.id for row in rows])
            .order_by()
            .values_list("prefix_id", *_LINK_PATHS, *_TRUNK_PATHS)
        ):
            link = _link(values[1 : width + 1])
            targets[values[0]].append(TargetRow.of(link, _trunk(values[width + 1 :])))
        return [(row, tuple(targets.get(row.id, ()))) for row in rows]
