"""What the compiled table reads from the database, derived from routing.rows.

Each function takes a cursor and returns rows in the shapes the compiled table
keeps: tenants and trunks as rows.TenantRef / rows.TrunkRow, source networks as
(network, tenant id), and a tenant's routes as value tuples for packing.PrefixTable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from routing.rows import (
    PROFILE_NAMES,
    CustomerRow,
    PlanRef,
    RouteRow,
    ScheduleRow,
    TenantRef,
    TrunkRow,
    builder,
    names,
    select_sql,
)
from routing.schedules import Schedule, from_row

_TENANT_SQL = f"SELECT {select_sql(TenantRef, 't')} FROM tenants_tenant t"  # noqa: S608
_PLAN_SQL = f"SELECT {select_sql(PlanRef, 'pl')} FROM routing_routingplan pl"  # noqa: S608
_CUSTOMER_SQL = (
    f"SELECT {select_sql(CustomerRow, 'cu')} FROM routing_customer cu "  # noqa: S608
    "JOIN routing_routingplan pl ON pl.id = cu.plan_id"
)
_CUSTOMER_SOURCE_SQL = (
    "SELECT s.customer_id, s.network, s.port FROM routing_customersource s "
    "JOIN routing_customer cu ON cu.id = s.customer_id"
)
_SCHEDULE_SQL = f"SELECT {select_sql(ScheduleRow, 's')} FROM routing_schedule s"  # noqa: S608
_TRUNK_SQL = (
    f"SELECT {select_sql(TrunkRow, 'tr')} FROM routing_trunk tr "  # noqa: S608
    "JOIN routing_carrier c ON c.id = tr.carrier_id "
    "LEFT JOIN routing_trunkhealth th ON th.trunk_id = tr.id"
)
_ROUTE_COLUMNS = select_sql(RouteRow, "p")
# NULL (a target without a schedule) is packed as 0: no id is 0.
_PROFILE = " || ':' || ".join(f"coalesce(t.{name}, 0)" for name in PROFILE_NAMES)
# The targets of each route as two strings: the ids, and the profile (trunk:priority:
# weight,...) which is the same for thousands of routes and is parsed once.
_PREFIX_SQL = {
    "postgresql": f"""
SELECT {_ROUTE_COLUMNS}, t.ids, t.profile
FROM routing_dialprefix p LEFT JOIN LATERAL (
    SELECT string_agg(t.id::text, ',' ORDER BY t.id) AS ids,
           string_agg({_PROFILE}, ',' ORDER BY t.id) AS profile
    FROM routing_routetarget t WHERE t.prefix_id = p.id) t ON true
WHERE p.plan_id = %s {{where}}
ORDER BY length(p.prefix), p.prefix COLLATE "C", p.id
""",  # noqa: S608
    "sqlite": f"""
SELECT {_ROUTE_COLUMNS},
  (SELECT group_concat(id, ',') FROM (SELECT t.id FROM routing_routetarget t
     WHERE t.prefix_id = p.id ORDER BY t.id)),
  (SELECT group_concat(x, ',') FROM (SELECT {_PROFILE}
     AS x FROM routing_routetarget t WHERE t.prefix_id = p.id ORDER BY t.id))
FROM routing_dialprefix p
WHERE p.plan_id = %s {{where}}
ORDER BY length(p.prefix), p.prefix, p.id
""",  # noqa: S608
}

# A staged plan's routes as published in one version (routing.models.PublishedRoute):
# the same values in the same order, the draft route's id standing for the route's.
_PUBLISHED_COLUMNS = ", ".join(
    "p.route_id" if name == "id" else f"p.{name}" for name in names(RouteRow)
)
PUBLISHED_SQL = f"""
SELECT {_PUBLISHED_COLUMNS}, p.target_ids, p.targets
FROM routing_publishedroute p
WHERE p.plan_id = %s AND p.since <= %s AND (p.until IS NULL OR p.until > %s) {{where}}
ORDER BY length(p.prefix), p.prefix {{collate}}, p.route_id
"""  # noqa: S608

_tenant, _trunk, _plan, _customer, _schedule = (
    builder(TenantRef),
    builder(TrunkRow),
    builder(PlanRef),
    builder(CustomerRow),
    builder(ScheduleRow),
)
_CUSTOMER_WIDTH = len(names(CustomerRow))


def _marks(values: Iterable) -> str:
    return ", ".join(["%s"] * len(list(values)))


def tenants(cursor, ids: set[int] | None = None) -> dict[int, TenantRef]:
    """The tenants with these ids (all when None), by id."""
    sql, params = _TENANT_SQL, []
    if ids is not None:
        sql += f" WHERE t.id IN ({_marks(ids)})"
        params = list(ids)
    cursor.execute(sql, params)
    return {row.id: row for row in map(_tenant, cursor.fetchall())}


def plans(cursor, ids: set[int] | None = None) -> dict[int, PlanRef]:
    """The routing plans with these ids (all when None), by id."""
    sql, params = _PLAN_SQL, []
    if ids is not None:
        sql += f" WHERE pl.id IN ({_marks(ids)})"
        params = list(ids)
    cursor.execute(sql, params)
    return {row.id: row for row in map(_plan, cursor.fetchall())}


def customers(cursor, tenant_ids: set[int] | None = None) -> dict[int, list[CustomerRow]]:
    """The customers of these tenants (all when None) with their sources, by tenant."""
    where, params = "", []
    if tenant_ids is not None:
        where = f" WHERE cu.tenant_id IN ({_marks(tenant_ids)})"
        params = list(tenant_ids)
    cursor.execute(_CUSTOMER_SQL + where, params)
    rows = [_customer(values) for values in cursor.fetchall()]
    cursor.execute(_CUSTOMER_SOURCE_SQL + where + " ORDER BY s.id", params)
    sources: dict[int, list[tuple[str, int | None]]] = defaultdict(list)
    for customer_id, network, port in cursor.fetchall():
        sources[customer_id].append((network, port))
    found: dict[int, list[CustomerRow]] = {tenant_id: [] for tenant_id in tenant_ids or ()}
    for row in rows:
        found.setdefault(row.tenant_id, []).append(
            replace(row, sources=tuple(sources.get(row.id, ())))
        )
    return found


def schedules(cursor, tenant_ids: set[int] | None = None) -> dict[int, dict[int, Schedule]]:
    """The schedules of these tenants (all when None), parsed, by tenant then id.

    A schedule whose periods no longer parse (written by hand in SQL) is left out:
    its routes and targets are then never in force, which the trace says.
    """
    sql, params = _SCHEDULE_SQL, []
    if tenant_ids is not None:
        sql += f" WHERE s.tenant_id IN ({_marks(tenant_ids)})"
        params = list(tenant_ids)
    cursor.execute(sql, params)
    found: dict[int, dict[int, Schedule]] = {tenant_id: {} for tenant_id in tenant_ids or ()}
    for row in map(_schedule, cursor.fetchall()):
        parsed = from_row(row)
        if parsed is not None:
            found.setdefault(row.tenant_id, {})[row.id] = parsed
    return found


def sources(cursor) -> list[tuple[str, int]]:
    """Every source network with its tenant id."""
    cursor.execute("SELECT network, tenant_id FROM tenants_tenantsource")
    return cursor.fetchall()


def trunks(cursor, carrier_ids: set[int] | None, trunk_ids: set[int] | None) -> dict[int, TrunkRow]:
    """The trunks of these carriers plus these trunks (all when both are None), by id."""
    sql, params = _TRUNK_SQL, []
    if carrier_ids is not None or trunk_ids is not None:
        carrier_ids, trunk_ids = carrier_ids or {0}, trunk_ids or {0}
        sql += f" WHERE tr.carrier_id IN ({_marks(carrier_ids)}) OR tr.id IN ({_marks(trunk_ids)})"
        params = [*carrier_ids, *trunk_ids]
    cursor.execute(sql, params)
    return {row.id: row for row in map(_trunk, cursor.fetchall())}


def routes_query(
    vendor: str, plan_id: int, version: int | None, *, ordered: bool = True
) -> tuple[str, list]:
    """The query of a plan's routes in key order (unless not `ordered`), with "{where}"
    for more conditions on `p` (the route): as saved (the draft) when `version` is None,
    else as published in it. Each row is the route's values (rows.RouteRow order),
    target ids, profile."""
    if version is None:
        sql, params = _PREFIX_SQL.get(vendor, _PREFIX_SQL["sqlite"]), [plan_id]
    else:
        collate = 'COLLATE "C"' if vendor == "postgresql" else ""
        sql, params = PUBLISHED_SQL.replace("{collate}", collate), [plan_id, version, version]
    if not ordered:
        sql = sql.partition("\nORDER BY length(p.prefix)")[0]
    return sql, params


def select_routes(
    cursor, vendor: str, plan_id: int, prefixes: list[str] | None, version: int | None = None
) -> None:
    """Execute the query of a plan's routes (these prefixes only, unless None)."""
    sql, params = routes_query(vendor, plan_id, version)
    if prefixes is None:
        cursor.execute(sql.replace("{where}", ""), params)
    else:
        cursor.execute(
            sql.replace("{where}", f"AND p.prefix IN ({_marks(prefixes)})"),
            [*params, *prefixes],
        )
