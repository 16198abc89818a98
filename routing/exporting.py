"""Export a tenant's dial prefixes as CSV in the format routing.importing reads.

Rows are ordered by prefix and targets by priority, then weight (highest first),
then creation, so export -> import -> export gives the same bytes. Rows stream
from a server-side cursor on PostgreSQL: a million prefixes never sit in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

from django.db import connections, transaction

from routing.importing import COLUMNS, Progress
from routing.models import Trunk
from tenants.models import Tenant

_SQL = {
    "postgresql": """
SELECT p.prefix, p.action, p.routing_mode, t.targets, p.min_length, p.max_length,
       p.reject_code, p.reject_reason, p.description, p.is_active
FROM routing_dialprefix p LEFT JOIN LATERAL (
    SELECT string_agg(c.name || '/' || tr.name || ':' || t.priority || ':' || t.weight, '|'
                      ORDER BY t.priority, t.weight DESC, t.id) AS targets
    FROM routing_routetarget t
    JOIN routing_trunk tr ON tr.id = t.trunk_id
    JOIN routing_carrier c ON c.id = tr.carrier_id
    WHERE t.prefix_id = p.id) t ON true
WHERE p.tenant_id = %s
ORDER BY p.prefix COLLATE "C"
""",
    "sqlite": """
SELECT p.prefix, p.action, p.routing_mode,
  (SELECT group_concat(x, '|') FROM (
      SELECT c.name || '/' || tr.name || ':' || t.priority || ':' || t.weight AS x
      FROM routing_routetarget t
      JOIN routing_trunk tr ON tr.id = t.trunk_id
      JOIN routing_carrier c ON c.id = tr.carrier_id
      WHERE t.prefix_id = p.id ORDER BY t.priority, t.weight DESC, t.id)),
  p.min_length, p.max_length, p.reject_code, p.reject_reason, p.description, p.is_active
FROM routing_dialprefix p
WHERE p.tenant_id = %s
ORDER BY p.prefix
""",
}


class ExportError(Exception):
    """The table cannot be written in the CSV format without losing something."""


def check_names(tenant: Tenant) -> None:
    """Trunk and carrier names must survive the targets column (`|` separates targets)."""
    bad = [
        f"{carrier}/{trunk}"
        for carrier, trunk in Trunk.objects.filter(carrier__tenant=tenant).values_list(
            "carrier__name", "name"
        )
        if "|" in carrier + trunk or carrier != carrier.strip() or trunk != trunk.strip()
    ]
    if bad:
        raise ExportError(
            "Rename these so the CSV can name them (no '|', no leading or trailing spaces): "
            + ", ".join(sorted(bad))
        )


def export_rows(tenant: Tenant, using: str = "default") -> Iterator[list[str]]:
    """The header, then one CSV row per prefix of `tenant`."""
    check_names(tenant)
    yield list(COLUMNS)
    connection = connections[using]
    sql = _SQL.get(connection.vendor, _SQL["sqlite"])
    with transaction.atomic(using=using), connection.chunked_cursor() as cursor:
        cursor.execute(sql, [tenant.pk])
        while rows := cursor.fetchmany(10_000):
            for prefix, action, mode, targets, low, high, code, reason, text, active in rows:
                yield [
                    prefix,
                    action,
                    mode,
                    targets or "",
                    "" if low is None else str(low),
                    "" if high is None else str(high),
                    "" if code is None else str(code),
                    reason,
                    text,
                    "yes" if active else "no",
                ]


def write_csv(
    tenant: Tenant, out: TextIO, *, progress: Progress | None = None, using: str = "default"
) -> int:
    """Write the tenant's table to `out`; returns the number of prefixes."""
    writer = csv.writer(out, lineterminator="\n")
    count = -1
    for count, row in enumerate(export_rows(tenant, using)):
        writer.writerow(row)
        if progress and count and count % 50_000 == 0:
            progress("exporting", count, 0)
    return count
