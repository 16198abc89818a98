"""Writing aggregated outcomes: additive upserts, so processes and flushes merge by addition.

`INSERT ... ON CONFLICT (key) DO UPDATE SET n = n + excluded.n` reads the same on
PostgreSQL and SQLite (3.24+); RETURNING (SQLite 3.35+) gives the bucket's id for its
counts. Keys are written in sorted order so that two processes flushing the same
minutes lock rows in the same order (no deadlock on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.db import connection, transaction

from outcomes.models import OutcomeBucket, OutcomeCount
from routing import health
from routing.models import Trunk
from tenants.models import Tenant

# Columns added up on conflict, in the order of Delta.sums().
SUMMED = (
    "attempts",
    "answered",
    "failed_4xx",
    "failed_5xx",
    "failed_6xx",
    "failed_other",
    "ended",
    "duration_s_sum",
    "pdd_count",
    "pdd_ms_sum",
)

# (tenant slug, minute as Unix seconds, trunk id or 0, prefix, customer)
Key = tuple[str, int, int, str, str]
# (tenant slug, trunk id): whose attempt outcomes go to the trunk's health
TrunkKey = tuple[str, int]


@dataclass(slots=True)
class Delta:
    """What one process saw for one bucket key since its last flush."""

    trunk_name: str = ""
    carrier_name: str = ""
    attempts: int = 0
    answered: int = 0
    failed_4xx: int = 0
    failed_5xx: int = 0
    failed_6xx: int = 0
    failed_other: int = 0
    ended: int = 0
    duration_s_sum: float = 0.0
    pdd_count: int = 0
    pdd_ms_sum: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    pdd: Counter[int] = field(default_factory=Counter)

    def sums(self) -> list[int | float]:
        return [getattr(self, name) for name in SUMMED]


@dataclass(slots=True)
class Written:
    buckets: int = 0
    events: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # reason -> events


def write(deltas: dict[Key, Delta]) -> Written:
    """Add `deltas` to the buckets, in one transaction. Refuses keys of unknown tenants
    and trunks of another tenant (counted by reason in the result)."""
    written = Written()
    if not deltas:
        return written
    tenants = dict(
        Tenant.objects.filter(slug__in={key[0] for key in deltas}).values_list("slug", "pk")
    )
    trunk_ids = {key[2] for key in deltas if key[2]}
    trunks = {
        pk: (tenant_id, name, carrier)
        for pk, tenant_id, name, carrier in Trunk.objects.filter(pk__in=trunk_ids).values_list(
            "pk", "carrier__tenant_id", "name", "carrier__name"
        )
    }
    rows = []
    for key in sorted(deltas):
        delta = deltas[key]
        events = delta.attempts + delta.ended
        tenant_id = tenants.get(key[0])
        if tenant_id is None:
            written.refused["unknown tenant"] += events
            continue
        trunk_id = None
        if key[2]:
            known = trunks.get(key[2])
            if known is not None:
                if known[0] != tenant_id:
                    written.refused["trunk of another tenant"] += events
                    continue
                trunk_id = key[2]
                delta.trunk_name, delta.carrier_name = known[1], known[2]
        rows.append((tenant_id, trunk_id, key, delta))
        written.events += events
    by_minute: dict[int, list[tuple[int, int | None, Key, Delta]]] = {}
    for row in rows:
        by_minute.setdefault(row[2][1], []).append(row)
    with transaction.atomic(), connection.cursor() as cursor:
        for minute in sorted(by_minute):
            group = by_minute[minute]
            for start in range(0, len(group), ROWS_PER_STATEMENT):
                chunk = group[start : start + ROWS_PER_STATEMENT]
                ids = _upsert_buckets(cursor, minute, chunk)
                counts = [
                    (ids[(tenant_id, key[2], key[3], key[4])], kind, value, count)
                    for tenant_id, _, key, delta in chunk
                    for kind, counter in (
                        (OutcomeCount.Kind.CODE.value, delta.codes),
                        (OutcomeCount.Kind.PDD.value, delta.pdd),
                    )
                    for value, count in sorted(counter.items())
                ]
                for first in range(0, len(counts), COUNTS_PER_STATEMENT):
                    _upsert_counts(cursor, counts[first : first + COUNTS_PER_STATEMENT])
                written.buckets += len(chunk)
    return written


# Bound the parameters of one statement (SQLite allows 32,766).
ROWS_PER_STATEMENT = 500
COUNTS_PER_STATEMENT = 2000
COLUMNS = (
    "tenant_id",
    "minute",
    "trunk_id",
    "trunk_key",
    "trunk_name",
    "carrier_name",
    "prefix",
    "customer",
    *SUMMED,
)


def _upsert_buckets(
    cursor, minute: int, rows: list[tuple[int, int | None, Key, Delta]]
) -> dict[tuple[int, int, str, str], int]:
    """Upsert one minute's buckets in one statement; their ids by (tenant, trunk, prefix,
    customer). RETURNING's order is not the VALUES' order, so the keys come back too."""
    table = OutcomeBucket._meta.db_table
    when = connection.ops.adapt_datetimefield_value(dt.datetime.fromtimestamp(minute, tz=dt.UTC))
    values: list[object] = []
    for tenant_id, trunk_id, key, delta in rows:
        values += [tenant_id, when, trunk_id, key[2], delta.trunk_name, delta.carrier_name]
        values += [key[3], key[4], *delta.sums()]
    row = f"({', '.join(['%s'] * len(COLUMNS))})"
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in SUMMED)
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(COLUMNS)}) "  # noqa: S608 (names are ours)
        f"VALUES {', '.join([row] * len(rows))} "
        "ON CONFLICT (tenant_id, minute, trunk_key, prefix, customer) DO UPDATE SET "
        f"{added}, trunk_id = excluded.trunk_id, trunk_name = excluded.trunk_name, "
        "carrier_name = excluded.carrier_name "
        "RETURNING id, tenant_id, trunk_key, prefix, customer",
        values,
    )
    return {tuple(found[1:]): found[0] for found in cursor.fetchall()}


def _upsert_counts(cursor, rows: list[tuple[int, str, int, int]]) -> None:
    table = OutcomeCount._meta.db_table
    cursor.execute(
        f"INSERT INTO {table} (bucket_id, kind, value, count) "  # noqa: S608 (names are ours)
        f"VALUES {', '.join(['(%s, %s, %s, %s)'] * len(rows))} "
        "ON CONFLICT (bucket_id, kind, value) "
        f"DO UPDATE SET count = {table}.count + excluded.count",
        [value for row in rows for value in row],
    )


def observe_health(outcomes: Mapping[TrunkKey, Iterable[tuple[float, bool]]], now: float) -> int:
    """Hand each trunk's attempt outcomes ((at, failed), in order) to routing.health.

    Only a trunk of the events' tenant: the others were refused with their buckets.
    Returns how many trunks changed state.
    """
    tenants = dict(
        Trunk.objects.filter(pk__in={key[1] for key in outcomes}).values_list(
            "pk", "carrier__tenant__slug"
        )
    )
    batch = {
        trunk_id: list(seen)
        for (slug, trunk_id), seen in outcomes.items()
        if tenants.get(trunk_id) == slug
    }
    return health.observe(batch, dt.datetime.fromtimestamp(now, tz=dt.UTC))


def prune(*, now: dt.datetime, days: int) -> int:
    """Delete the buckets (and their counts) older than `days` before `now`; how many."""
    cutoff = now - dt.timedelta(days=days)
    OutcomeCount.objects.filter(bucket__minute__lt=cutoff).delete()
    deleted, _ = OutcomeBucket.objects.filter(minute__lt=cutoff).delete()
    return deleted
