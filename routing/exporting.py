"""Export a routing plan's dial prefixes as CSV in the format routing.importing reads.

Rows are ordered by prefix and targets by priority, then weight (highest first),
then creation, so export -> import -> export gives the same bytes. Rows stream
from a server-side cursor on PostgreSQL: a million prefixes never sit in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

from django.db import connections, transaction
from django.db.models import QuerySet

from routing.importing import Progress
from routing.models import DialPrefix, RoutingPlan, Schedule, Trunk
from routing.rows import CSV_COLUMNS, Kind, csv_route_columns, normaliser
from routing.services import plan_of
from tenants.models import Tenant

_KINDS = {spec.name: spec.kind for spec in csv_route_columns()}
# The targets of a route as carrier/trunk:priority:weight[@schedule], by priority, then
# weight (highest first), then creation.
_TARGET_ROWS = """
    FROM routing_routetarget t
    JOIN routing_trunk tr ON tr.id = t.trunk_id
    JOIN routing_carrier c ON c.id = tr.carrier_id
    LEFT JOIN routing_schedule s ON s.id = t.schedule_id
    WHERE t.prefix_id = p.id"""
_TARGET_TEXT = (
    "c.name || '/' || tr.name || ':' || t.priority || ':' || t.weight"
    " || coalesce('@' || s.name, '')"
)
_SCHEDULE = "(SELECT s.name FROM routing_schedule s WHERE s.id = p.schedule_id)"
_ORDER = "t.priority, t.weight DESC, t.id"
_TARGETS = {
    "postgresql": f"(SELECT string_agg({_TARGET_TEXT}, '|' ORDER BY {_ORDER}){_TARGET_ROWS})",
    "sqlite": f"""(SELECT group_concat(x, '|') FROM (
    SELECT {_TARGET_TEXT} AS x{_TARGET_ROWS} ORDER BY {_ORDER}))""",  # noqa: S608
}
# A prefix's routes (caller prefixes, schedules) in creation order, which an import
# keeps: export -> import -> export gives the same bytes.
_ORDER_BY = {
    "postgresql": 'p.prefix COLLATE "C", p.caller_prefix COLLATE "C", p.id',
    "sqlite": "p.prefix, p.caller_prefix, p.id",
}


def _select(vendor: str, name: str) -> str:
    if name == "targets":
        return _TARGETS[vendor]
    if name == "schedule":
        return _SCHEDULE
    return f"p.{name}"


def _export_sql(vendor: str, among: str = "") -> str:
    """The export query: one row per route, its cells in CSV_COLUMNS order; `among`, a
    query of route ids, keeps only those."""
    cells = ", ".join(_select(vendor, name) for name in CSV_COLUMNS)
    where = f" AND p.id IN ({among})" if among else ""
    return (
        f"SELECT {cells} FROM routing_dialprefix p "  # noqa: S608 (names from routing.rows)
        f"WHERE p.plan_id = %s{where} ORDER BY {_ORDER_BY[vendor]}"
    )


_SQL = {vendor: _export_sql(vendor) for vendor in _TARGETS}


_FIX = {spec.name: normaliser(spec) for spec in csv_route_columns()}


def _cell(name: str, value) -> str:
    value = _FIX[name](value) if name in _FIX else value
    if value is None:
        return ""
    if _KINDS.get(name) is Kind.BOOL:
        return "yes" if value else "no"
    return str(value)


class ExportError(Exception):
    """The table cannot be written in the CSV format without losing something."""


def check_names(tenant: Tenant) -> None:
    """Trunk, carrier and schedule names must survive the targets column (`|` separates
    targets, `@` a target's schedule)."""
    bad = [
        f"{carrier}/{trunk}"
        for carrier, trunk in Trunk.objects.filter(carrier__tenant=tenant).values_list(
            "carrier__name", "name"
        )
        if "|" in carrier + trunk or carrier != carrier.strip() or trunk != trunk.strip()
    ]
    bad += [
        f"schedule {name}"
        for name in Schedule.objects.filter(tenant=tenant).values_list("name", flat=True)
        if "|" in name or "@" in name or name != name.strip()
    ]
    if bad:
        raise ExportError(
            "Rename these so the CSV can name them (no '|' or '@', no leading or trailing spaces): "
            + ", ".join(sorted(bad))
        )


def export_rows(
    tenant: Tenant,
    plan: RoutingPlan | None = None,
    using: str = "default",
    *,
    routes: QuerySet[DialPrefix] | None = None,
) -> Iterator[list[str]]:
    """The header, then one CSV row per prefix of `plan` (the tenant's only plan if None).

    `routes` (the admin list's filtered rows) keeps only those of them: the query
    gets `AND p.id IN (<their query>)`, so the filter runs in the database."""
    plan = plan_of(tenant=tenant, plan=plan)
    check_names(tenant)
    yield list(CSV_COLUMNS)
    connection = connections[using]
    vendor = connection.vendor if connection.vendor in _SQL else "sqlite"
    sql, params = _SQL[vendor], [plan.pk]
    if routes is not None:
        among, extra = routes.order_by().values("pk").query.sql_with_params()
        sql, params = _export_sql(vendor, among), [plan.pk, *extra]
    with transaction.atomic(using=using), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(10_000):
            for values in rows:
                yield [_cell(name, value) for name, value in zip(CSV_COLUMNS, values, strict=True)]


def write_csv(
    tenant: Tenant,
    out: TextIO,
    *,
    plan: RoutingPlan | None = None,
    progress: Progress | None = None,
    using: str = "default",
) -> int:
    """Write the plan's table to `out`; returns the number of prefixes."""
    writer = csv.writer(out, lineterminator="\n")
    count = -1
    for count, row in enumerate(export_rows(tenant, plan, using)):
        writer.writerow(row)
        if progress and count and count % 50_000 == 0:
            progress("exporting", count, 0)
    return count
