"""Change tracking of the route tables, for compiled copies in other processes.

Every write to a tenant, source, carrier, trunk, routing plan, customer (and its
sources), schedule, prefix or target bumps one version counter (routing_routetableversion,
id 1) and appends a RouteChange that says what to reload, in the writing
transaction. Database triggers do it (migration 0007, routing/migrations/
_change_triggers.py), so no writer can forget: the admin, its bulk actions, the REST
API, the importer and hand-written SQL are all covered.

Why a counter row and not the change log's own ids: the bump is an UPDATE of one
row, which holds that row's lock until the writing transaction ends, so versions
are handed out in commit order. A reader that sees version N knows that every
change up to N is committed and readable; with sequence ids a later id can commit
before an earlier one and a poller would skip the earlier change for good.

A bulk import on PostgreSQL turns the per-row triggers off for its own
transaction (`bulk_writes()`) and records one 'table' change for the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connections, transaction

# What a change names: how a compiled table applies it.
TENANT = "tenant"  # key "", tenant_id: reload that tenant's row
SOURCES = "sources"  # reload every source network (a small table)
CARRIER = "carrier"  # key: carrier id; reload its trunks
TRUNK = "trunk"  # key: trunk id
PREFIX = "prefix"  # key "<plan id>:<prefix>": reload that route and its targets
TABLE = "table"  # key: plan id; reload the plan's whole prefix table (after an import)
PLAN = "plan"  # key: plan id; reload the plan's row (new, renamed or deleted)
CUSTOMERS = "customers"  # tenant_id: reload the tenant's customers and their sources
DECK = "deck"  # tenant_id, key: carrier id; reload that carrier's rate decks (rating.lookup)
BLOCKLIST = "blocklist"  # tenant_id, key: list id ("<id>:meta" its row only); blocklists.lookup
# tenant_id, key: schedule id; reload the tenant's schedules. Routes and targets hold
# only a schedule's id; the resolver reads the schedule itself from a small per-tenant
# map (RouteTable.schedules), so a changed window is one small reload, not a reload of
# every route that uses it (a wholesale "peak" schedule may be on 10^5 routes).
SCHEDULES = "schedules"
# tenant_id, key "<plan id>:<prefix>" or "<plan id>": a publish (versions.publishing)
# changed these published routes of a staged plan, or its whole table. A staged plan's
# own prefix and table changes are edits of its draft, which calls do not use.
PUBLISHED = "published"


@dataclass(frozen=True, slots=True)
class Change:
    version: int
    kind: str
    tenant_id: int | None
    key: str


def current_version(using: str = "default") -> int:
    """The version of the route tables: one primary-key read."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT version FROM routing_routetableversion WHERE id = 1")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def changes_between(after: int, upto: int, using: str = "default") -> list[Change]:
    """The changes with `after` < version <= `upto`, oldest first."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT version, kind, tenant_id, key FROM routing_routechange "
            "WHERE version > %s AND version <= %s ORDER BY version",
            [after, upto],
        )
        return [Change(int(v), kind, tenant, key or "") for v, kind, tenant, key in cursor]


def oldest_version(using: str = "default") -> int | None:
    """The oldest change still in the log (older ones are pruned)."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT MIN(version) FROM routing_routechange")
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else None


def record_change(
    kind: str, *, tenant_id: int | None = None, key: str = "", using: str = "default"
) -> int:
    """Record a change by hand (the triggers record row changes) and return its version."""
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO routing_routetableversion (id, version) VALUES (1, 1) "
            "ON CONFLICT (id) DO UPDATE SET version = routing_routetableversion.version + 1 "
            "RETURNING version"
        )
        version = int(cursor.fetchone()[0])
        cursor.execute(
            "INSERT INTO routing_routechange (version, kind, tenant_id, key, created_at) "
            "VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)",
            [version, kind, tenant_id, key],
        )
    return version


def record_changes(
    kind: str, keys: list[str], *, tenant_id: int | None = None, using: str = "default"
) -> int:
    """Record one change per key, with one bump of the version; returns the last version."""
    if not keys:
        return current_version(using)
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO routing_routetableversion (id, version) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET version = routing_routetableversion.version + %s "
            "RETURNING version",
            [len(keys), len(keys)],
        )
        last = int(cursor.fetchone()[0])
        first = last - len(keys) + 1
        cursor.executemany(
            "INSERT INTO routing_routechange (version, kind, tenant_id, key, created_at) "
            "VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)",
            [(first + n, kind, tenant_id, key) for n, key in enumerate(keys)],
        )
    return last


@contextmanager
def bulk_writes(using: str = "default") -> Iterator[None]:
    """Within an atomic block: skip the per-row change triggers for this transaction.

    The caller must record_change(TABLE, ...) for what it wrote. On SQLite (which
    has no session settings) the triggers keep recording every row.
    """
    connection = connections[using]
    if not connection.in_atomic_block:
        raise RuntimeError("bulk_writes() needs a transaction: wrap it in transaction.atomic().")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL routing.bulk = 'on'")
        yield
        # On an error the transaction (or savepoint) rolls back, and the setting with it.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL routing.bulk = 'off'")
    else:
        yield
