"""The database route table: the resolver's rows read straight from the database.

`DatabaseRouteTable` answers each lookup with indexed queries, so a decision costs
four queries whatever the size of the table (source → tenant, candidate customers
with their sources, candidate prefixes of the number, the targets of those
prefixes), and one more when a matching route or target has a schedule. Because it
keeps no copy, a change is live for the very next call in every process. The
compiled table (`routing.compiled`) answers the same protocol from memory.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from django.db import connections
from django.db.models import Q

from routing.models import (
    DialPrefix,
    PublishedRoute,
    RouteTarget,
    RoutingPlan,
    Schedule,
    Trunk,
)
from routing.rows import (
    PROFILE_NAMES,
    CustomerRow,
    PlanRef,
    RouteEntry,
    RouteRow,
    ScheduleRow,
    TargetLink,
    TargetRow,
    TenantRef,
    TrunkRow,
    builder,
    orm_paths,
    parse_ids,
    parse_profile,
    select_sql,
)
from routing.schedules import Schedule as ParsedSchedule
from routing.schedules import from_row
from tenants.models import Tenant, TenantSource
from tenants.networks import IPAddress, containing_networks, prefix_length

# A technical prefix is at most this long (routing.models.Customer.tech_prefix).
MAX_TECH_PREFIX = 16
_CUSTOMER_SQL = (
    f"SELECT {select_sql(CustomerRow, 'cu')}, s.network, s.port "  # noqa: S608
    "FROM routing_customer cu JOIN routing_routingplan pl ON pl.id = cu.plan_id "
    "LEFT JOIN routing_customersource s ON s.customer_id = cu.id "
    "WHERE cu.tenant_id = %s AND ({which}) ORDER BY cu.id, s.id"
)

_TENANT_PATHS = orm_paths(TenantRef)
_PLAN_PATHS = orm_paths(PlanRef)
_ROUTE_PATHS = orm_paths(RouteRow)
_LINK_PATHS = orm_paths(TargetLink)
_TRUNK_PATHS = orm_paths(TrunkRow, "trunk__")
_tenant, _route, _link, _trunk, _plan, _customer = (
    builder(TenantRef),
    builder(RouteRow),
    builder(TargetLink),
    builder(TrunkRow),
    builder(PlanRef),
    builder(CustomerRow),
)
_CUSTOMER_WIDTH = len(orm_paths(CustomerRow))
_PUBLISHED_PATHS = tuple("route_id" if path == "id" else path for path in _ROUTE_PATHS)
_TRUNK_AT, _PRIORITY_AT, _WEIGHT_AT, _SCHEDULE_AT = (
    PROFILE_NAMES.index(n) for n in ("trunk_id", "priority", "weight", "schedule_id")
)
_SCHEDULE_PATHS = orm_paths(ScheduleRow)
_schedule = builder(ScheduleRow)


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

    def customers(
        self, tenant_id: int, *, address: IPAddress | None, callee: str, account: str
    ) -> list[CustomerRow]:
        which, params = ["cu.is_default"], [tenant_id]
        if account:
            which.append("cu.account = %s")
            params.append(account)
        starts = [callee[:n] for n in range(1, min(len(callee), MAX_TECH_PREFIX) + 1)]
        if starts:
            which.append(f"cu.tech_prefix IN ({', '.join(['%s'] * len(starts))})")
            params.extend(starts)
        if address is not None:
            networks = containing_networks(address)
            marks = ", ".join(["%s"] * len(networks))  # placeholders only
            which.append(
                "cu.id IN (SELECT customer_id FROM routing_customersource "  # noqa: S608
                f"WHERE network IN ({marks}))"
            )
            params.extend(networks)
        return self._customers(" OR ".join(which), params)

    def customer_named(self, tenant_id: int, name: str) -> CustomerRow | None:
        found = self._customers("cu.name = %s", [tenant_id, name])
        return found[0] if found else None

    def _customers(self, which: str, params: list) -> list[CustomerRow]:
        """Customers with their sources: one query, a row per source."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(_CUSTOMER_SQL.replace("{which}", which), params)
            rows = cursor.fetchall()
        found: dict[int, CustomerRow] = {}
        sources: dict[int, list[tuple[str, int | None]]] = defaultdict(list)
        for values in rows:
            customer = found.setdefault(values[0], _customer(values[:_CUSTOMER_WIDTH]))
            network, port = values[_CUSTOMER_WIDTH:]
            if network is not None:
                sources[customer.id].append((network, port))
        return [replace(c, sources=tuple(sources.get(c.id, ()))) for c in found.values()]

    def plan_named(self, tenant_id: int, name: str) -> PlanRef | None:
        values = (
            RoutingPlan.objects.using(self.using)
            .filter(tenant_id=tenant_id, name=name)
            .values_list(*_PLAN_PATHS)
            .first()
        )
        return _plan(values) if values else None

    def trunks(self, tenant_id: int) -> list[TrunkRow]:
        return [
            _trunk(values)
            for values in Trunk.objects.using(self.using)
            .filter(carrier__tenant_id=tenant_id)
            .order_by("id")
            .values_list(*orm_paths(TrunkRow))
        ]

    def schedules(self, tenant_id: int, ids: set[int]) -> dict[int, ParsedSchedule]:
        if not ids:
            return {}
        found = {}
        for values in (
            Schedule.objects.using(self.using)
            .filter(tenant_id=tenant_id, id__in=ids)
            .values_list(*_SCHEDULE_PATHS)
        ):
            parsed = from_row(_schedule(values))
            if parsed is not None:
                found[parsed.id] = parsed
        return found

    def routes(self, plan_id: int, candidates: list[str], version: int | None) -> list[RouteEntry]:
        if version is not None:
            return self._published_routes(plan_id, candidates, version)
        rows = [
            _route(values)
            for values in DialPrefix.objects.using(self.using)
            .filter(plan_id=plan_id, prefix__in=candidates)
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

    def _published_routes(
        self, plan_id: int, candidates: list[str], version: int
    ) -> list[RouteEntry]:
        """The routes as published in `version`: one query for the routes with their
        targets (one version, whatever is published meanwhile), one for the trunks."""
        found = list(
            PublishedRoute.objects.using(self.using)
            .filter(plan_id=plan_id, prefix__in=candidates, since__lte=version)
            .filter(Q(until__isnull=True) | Q(until__gt=version))
            .order_by()
            .values_list(*_PUBLISHED_PATHS, "target_ids", "targets")
        )
        if not found:
            return []
        width = len(_PUBLISHED_PATHS)
        links = [
            tuple(zip(parse_ids(values[width]), parse_profile(values[width + 1]), strict=True))
            for values in found
        ]
        trunk_ids = {item[_TRUNK_AT] for targets in links for _, item in targets}
        trunks = {
            row.id: row
            for row in map(
                _trunk,
                Trunk.objects.using(self.using)
                .filter(id__in=trunk_ids)
                .values_list(*orm_paths(TrunkRow)),
            )
        }
        return [
            (
                _route(values[:width]),
                tuple(
                    TargetRow(
                        id=target_id,
                        priority=item[_PRIORITY_AT],
                        weight=item[_WEIGHT_AT],
                        trunk=trunks[item[_TRUNK_AT]],
                        schedule_id=item[_SCHEDULE_AT] or None,
                    )
                    for target_id, item in targets
                    if item[_TRUNK_AT] in trunks  # a trunk deleted since: not a target
                ),
            )
            for values, targets in zip(found, links, strict=True)
        ]
