"""A compiled route table: each process keeps a packed copy in memory, kept current.

`CompiledRouteTable` answers the RouteTable protocol (routing.resolver) from memory,
so a decision costs no query. It reads the route-table version (one primary-key
read) every `poll_interval` seconds (0.2 s); when the version moved, it reads the
change log (routing.changes) and reloads only what changed: a prefix and its
targets, a trunk, a carrier's trunks, a tenant, the source networks. A change is
therefore used by every process, on every host, within the poll interval.

The process's table (`compiled_route_table()`) polls from its own thread, so no
request or event ever waits on the database for it: while the database hangs or
is down, the tenants whose tables are loaded are answered from memory as of the
last version seen (as stale as the outage is long), and the poller catches up
within a poll interval of the database answering again. It logs once when the
database stops answering and once when it answers again. A table made with
`poller=False` (tests, benchmarks) polls inline, from the deciding thread.

A plan's whole table is (re)built in a background thread when the process
starts and after an import; until it is ready, that plan is answered from the
database (DatabaseRouteTable: current, only slower; 503 while the database does
not answer). So while the database answers, no answer is staler than the poll
interval, and a restart does not wait for a million rows.

How a plan's routes are packed is routing.compiled.packing; what is read from
the database, routing.compiled.loading.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from typing import Any

from django.db import DatabaseError, connections, transaction

from routing import changes
from routing.compiled import loading
from routing.compiled.customers import CustomerIndex
from routing.compiled.packing import PROFILE_NAMES, Entry, Pools, PrefixTable, entry_of
from routing.process_local import ProcessLocal, threads_allowed
from routing.process_local import close_connection as _close
from routing.rows import (
    CustomerRow,
    PlanRef,
    RouteEntry,
    TargetRow,
    TenantRef,
    TrunkRow,
)
from routing.schedules import Schedule
from routing.tables import DatabaseRouteTable
from tenants.networks import IPAddress, NetworkIndex

logger = logging.getLogger(__name__)

# Beyond this many changes at once, rebuilding is cheaper than applying them.
_MAX_DELTA = 20_000
# An overlay this large means the packed arrays are mostly outdated: rebuild.
_MAX_OVERLAY = 50_000
_CHUNK = 500
# Where each value of a target's profile is (packing.PROFILE_NAMES, by name): the
# hot path builds a TargetRow straight from it, with no intermediate row or dict.
_TRUNK, _PRIORITY, _WEIGHT, _SCHEDULE = (
    PROFILE_NAMES.index(n) for n in ("trunk_id", "priority", "weight", "schedule_id")
)


# Routes whose TargetRows are remembered (see CompiledRouteTable.routes).
_TARGET_ROWS = 16384


class CompiledRouteTable:
    """The route tables compiled in memory, refreshed from the change log (see module doc)."""

    def __init__(
        self,
        using: str = "default",
        *,
        poll_interval: float = 0.2,
        background: bool = True,
        poller: bool = False,
    ) -> None:
        self.using = using
        self.poll_interval = poll_interval
        self.background = background
        self.poller = poller
        # time.monotonic() of the last refresh that reached the database's version.
        self.refreshed_at: float | None = None
        self.database = DatabaseRouteTable(using)
        self.version: int | None = None  # None until the first load
        self._tenants: dict[int, TenantRef] = {}
        self._slugs: dict[str, int] = {}
        self._sources: NetworkIndex[int] = NetworkIndex(())
        self._trunks: dict[int, TrunkRow] = {}
        # Routes' targets made into TargetRows (routes()): id(targets) -> (targets,
        # the trunks dict they were made with, the rows).
        self._target_rows: dict[int, tuple[Any, dict[int, TrunkRow], tuple[TargetRow, ...]]] = {}
        self._plans: dict[int, PlanRef] = {}
        self._plan_names: dict[tuple[int, str], int] = {}
        self._customers: dict[int, CustomerIndex] = {}  # by tenant
        self._schedules: dict[int, dict[int, Schedule]] = {}  # by tenant, then id
        self._tables: dict[int, PrefixTable] = {}  # plans whose table is ready
        self._pools = Pools()  # shared by every plan's table
        # Plans being built: the prefixes changed meanwhile, or None to start over.
        self._building: dict[int, set[str] | None] = {}
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._next_check = 0.0
        self._queue: queue.Queue[int] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- RouteTable ------------------------------------------------------------------

    def tenant_by_source(self, address: IPAddress) -> tuple[TenantRef, str] | None:
        self._maybe_refresh()
        if self.version is None:
            return self.database.tenant_by_source(address)
        found = self._sources.lookup(address)
        if found is None or found[1] not in self._tenants:
            return None
        network, tenant_id = found
        return self._tenants[tenant_id], network

    def tenant_by_slug(self, slug: str) -> TenantRef | None:
        self._maybe_refresh()
        if self.version is None:
            return self.database.tenant_by_slug(slug)
        tenant_id = self._slugs.get(slug)
        return self._tenants.get(tenant_id) if tenant_id is not None else None

    def customers(
        self, tenant_id: int, *, address: IPAddress | None, callee: str, account: str
    ) -> list[CustomerRow]:
        index = self._customers.get(tenant_id)
        if self.version is None or index is None:
            return self.database.customers(
                tenant_id, address=address, callee=callee, account=account
            )
        return index.candidates(address=address, callee=callee, account=account)

    def customer_named(self, tenant_id: int, name: str) -> CustomerRow | None:
        index = self._customers.get(tenant_id)
        if self.version is None or index is None:
            return self.database.customer_named(tenant_id, name)
        return index.by_name.get(name)

    def plan_named(self, tenant_id: int, name: str) -> PlanRef | None:
        if self.version is None:
            return self.database.plan_named(tenant_id, name)
        plan_id = self._plan_names.get((tenant_id, name))
        return self._plans.get(plan_id) if plan_id is not None else None

    def trunks(self, tenant_id: int) -> list[TrunkRow]:
        if self.version is None:
            return self.database.trunks(tenant_id)
        return sorted(
            (trunk for trunk in self._trunks.values() if trunk.tenant_id == tenant_id),
            key=lambda trunk: trunk.id,
        )

    def routes(self, plan_id: int, candidates: list[str], version: int | None) -> list[RouteEntry]:
        table = self._tables.get(plan_id)
        if table is None:
            return self.database.routes(plan_id, candidates, version)
        held, overlay = table.state  # one read: one version's routes
        if held != version:  # another version (a simulation, or a publish being applied)
            return self.database.routes(plan_id, candidates, version)
        trunks = self._trunks
        made = self._target_rows
        found = []
        for row, targets in table.find_all(candidates, overlay):
            # A route's targets as TargetRows, remembered while the trunks stay the same
            # dict (it is replaced, never changed, when a trunk changes).
            known = made.get(id(targets))
            if known is not None and known[0] is targets and known[1] is trunks:
                found.append((row, known[2]))
                continue
            rows = tuple(
                TargetRow(
                    id=target_id,
                    priority=item[_PRIORITY],
                    weight=item[_WEIGHT],
                    trunk=trunks[item[_TRUNK]],
                    schedule_id=item[_SCHEDULE] or None,
                )
                for target_id, item in targets
                if item[_TRUNK] in trunks
            )
            if len(made) >= _TARGET_ROWS:
                made.clear()
            made[id(targets)] = (targets, trunks, rows)
            found.append((row, rows))
        return found

    def schedules(self, tenant_id: int, ids: set[int]) -> dict[int, Schedule]:
        found = self._schedules.get(tenant_id)
        if self.version is None or found is None:
            return self.database.schedules(tenant_id, ids)
        return {i: found[i] for i in ids if i in found}

    # --- Freshness -------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether every plan is answered from memory (no build pending)."""
        return self.version is not None and not self._building

    def wait_ready(self, timeout: float) -> bool:
        """Load now and wait for the background builds (for startup and benchmarks)."""
        deadline = time.monotonic() + timeout
        while True:
            self._maybe_refresh()
            if self.ready() or time.monotonic() > deadline:
                return self.ready()
            time.sleep(0.05)

    def _maybe_refresh(self) -> None:
        if self.poller:
            if self._poller is None or not self._poller.is_alive():
                self._start_poller()
            return
        now = time.monotonic()
        if now < self._next_check or not self._refreshing.acquire(blocking=False):
            return
        try:
            self._next_check = now + self.poll_interval
            self.refresh()
        except DatabaseError:
            logger.exception("route table refresh failed; serving version %s", self.version)
        finally:
            self._refreshing.release()

    def refresh(self) -> None:
        """Bring the copy up to the database's current version now."""
        version = changes.current_version(self.using)
        known = self.version
        if known is None or version < known or version - known > _MAX_DELTA:
            self._load_all(version)
        elif version > known:
            self._apply(changes.changes_between(known, version, self.using))
            self.version = version
        self.refreshed_at = time.monotonic()

    # --- The poller thread -----------------------------------------------------------

    def _start_poller(self) -> None:
        with self._lock:
            if self._stopping.is_set() or (self._poller is not None and self._poller.is_alive()):
                return
            self._poller = threading.Thread(
                target=self._poll, name="route-table-poller", daemon=True
            )
            self._poller.start()

    def _poll(self) -> None:
        """Refresh every poll interval until stop(); a hung database holds only this thread."""
        failing_since: float | None = None
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    self.refresh()
                except DatabaseError as exc:
                    if failing_since is None:
                        failing_since = started
                        logger.error(
                            "route table: the database does not answer (%s); serving "
                            "version %s from memory until it does",
                            str(exc).strip() or type(exc).__name__,
                            self.version,
                        )
                    _close(self.using)  # a broken connection is reopened next time
                else:
                    took = time.monotonic() - started
                    if failing_since is not None or took > 1.0:
                        logger.warning(
                            "route table: the database answers again after %.1f s; "
                            "now at version %s",
                            time.monotonic() - (failing_since or started),
                            self.version,
                        )
                    failing_since = None
                self._stopping.wait(self.poll_interval)
        finally:
            _close(self.using)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the poller (tests switch databases; a process simply exits)."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(timeout)

    def _load_all(self, version: int) -> None:
        with self._lock:
            self._load_tenants(None)
            self._load_sources()
            self._load_trunks(None, None)
            self._load_plans(None)
            self._load_customers(None)
            self._load_schedules(None)
            self._tables = {}
            self.version = version
            for plan_id in list(self._plans):
                self._schedule_build(plan_id)

    def _staged(self, plan_id: int) -> bool:
        """Whether calls use the plan's published routes (its saved ones are a draft)."""
        plan = self._plans.get(plan_id)
        return plan is not None and plan.published_version is not None

    def _apply(self, batch: list[changes.Change]) -> None:
        kinds: dict[str, set] = defaultdict(set)
        prefixes: dict[int, set[str]] = defaultdict(set)
        drafts: dict[int, set[str]] = defaultdict(set)  # saved routes' changes
        for change in batch:
            if change.kind == changes.PUBLISHED:
                plan, one, prefix = change.key.partition(":")
                if one:
                    prefixes[int(plan)].add(prefix)
                else:
                    kinds[changes.TABLE].add(int(plan))
            elif change.kind == changes.PREFIX:
                plan, _, prefix = change.key.partition(":")
                drafts[int(plan)].add(prefix)
            elif change.kind in (changes.CARRIER, changes.TRUNK, changes.PLAN):
                kinds[change.kind].add(int(change.key))
                if change.kind == changes.PLAN:
                    # Customers carry their plan's columns (its published version).
                    kinds[changes.CUSTOMERS].add(change.tenant_id)
            elif change.kind == changes.TABLE:
                kinds["draft-table"].add(int(change.key))
            else:
                kinds[change.kind].add(change.tenant_id)
        with self._lock:
            new_tenants = kinds[changes.TENANT] - set(self._tenants)
            if kinds[changes.TENANT]:
                self._load_tenants(kinds[changes.TENANT])
            if kinds[changes.SOURCES]:
                self._load_sources()
            if kinds[changes.CARRIER] or kinds[changes.TRUNK]:
                self._load_trunks(kinds[changes.CARRIER], kinds[changes.TRUNK])
            if kinds[changes.PLAN]:
                for plan_id in self._load_plans(kinds[changes.PLAN]):
                    self._schedule_build(plan_id)
            # A staged plan's saved routes are its draft: calls do not use them.
            for plan_id in kinds["draft-table"]:
                if not self._staged(plan_id):
                    kinds[changes.TABLE].add(plan_id)
            for plan_id, keys in drafts.items():
                if not self._staged(plan_id):
                    prefixes[plan_id] |= keys
            if kinds[changes.CUSTOMERS] or new_tenants:
                self._load_customers(kinds[changes.CUSTOMERS] | new_tenants)
            if kinds[changes.SCHEDULES] or new_tenants:
                self._load_schedules(kinds[changes.SCHEDULES] | new_tenants)
            for plan_id in kinds[changes.TABLE]:
                if plan_id in self._plans:
                    self._schedule_build(plan_id)
            for plan_id, keys in prefixes.items():
                if plan_id in self._building:
                    pending = self._building[plan_id]
                    if pending is not None:
                        pending |= keys
                elif plan_id in self._tables:
                    self._reload_prefixes(self._tables[plan_id], plan_id, keys)

    # --- Loading ---------------------------------------------------------------------

    def _cursor(self):
        return connections[self.using].cursor()

    def _load_tenants(self, ids: set[int] | None) -> None:
        with self._cursor() as cursor:
            found = loading.tenants(cursor, ids)
        tenants = dict(self._tenants) if ids is not None else {}
        for tenant_id in ids or ():
            tenants.pop(tenant_id, None)
        tenants.update(found)
        for tenant_id in set(self._tenants) - set(tenants):
            self._customers.pop(tenant_id, None)
        self._tenants = tenants
        self._slugs = {tenant.slug: tenant.id for tenant in tenants.values()}

    def _load_sources(self) -> None:
        with self._cursor() as cursor:
            self._sources = NetworkIndex(loading.sources(cursor))

    def _load_trunks(self, carrier_ids: set[int] | None, trunk_ids: set[int] | None) -> None:
        with self._cursor() as cursor:
            found = loading.trunks(cursor, carrier_ids, trunk_ids)
        if carrier_ids is None and trunk_ids is None:
            self._trunks = found
            return
        trunks = dict(self._trunks)
        for trunk_id in trunk_ids or ():
            trunks.pop(trunk_id, None)  # deleted unless found again
        trunks.update(found)
        self._trunks = trunks

    def _load_plans(self, ids: set[int] | None) -> set[int]:
        """Reload these plans (all when None); returns the ids that are new here."""
        with self._cursor() as cursor:
            found = loading.plans(cursor, ids)
        plans = dict(self._plans) if ids is not None else {}
        for plan_id in ids or ():
            plans.pop(plan_id, None)  # deleted unless found again
        # New here: not known before this reload (a reloaded plan is not new, or every
        # edit of a plan, and every publish, would rebuild its whole table).
        new = set(found) - set(self._plans)
        plans.update(found)
        for plan_id in set(self._plans) - set(plans):
            self._tables.pop(plan_id, None)
            self._building.pop(plan_id, None)
        self._plans = plans
        self._plan_names = {(plan.tenant_id, plan.name): plan.id for plan in plans.values()}
        return new

    def _load_customers(self, tenant_ids: set[int] | None) -> None:
        with self._cursor() as cursor:
            found = loading.customers(cursor, tenant_ids)
        indexes = dict(self._customers) if tenant_ids is not None else {}
        for tenant_id, customers in found.items():
            indexes[tenant_id] = CustomerIndex(customers)
        self._customers = indexes

    def _load_schedules(self, tenant_ids: set[int] | None) -> None:
        with self._cursor() as cursor:
            found = loading.schedules(cursor, tenant_ids)
        # Every known tenant gets a map, empty or not: a decision never asks the
        # database for a tenant's schedules because it has none.
        maps = dict(self._schedules) if tenant_ids is not None else dict.fromkeys(self._tenants)
        maps = {tenant_id: found_map or {} for tenant_id, found_map in maps.items()}
        maps.update(found)
        self._schedules = maps

    def _plan_version(self, plan_id: int) -> int | None:
        plan = self._plans.get(plan_id)
        return plan.published_version if plan is not None else None

    def _select_routes(
        self, cursor, plan_id: int, prefixes: list[str] | None, version: int | None
    ) -> None:
        vendor = connections[self.using].vendor
        loading.select_routes(cursor, vendor, plan_id, prefixes, version)

    def _reload_prefixes(self, table: PrefixTable, plan_id: int, keys: set[str]) -> None:
        """Put the routes of `keys` (none where deleted) in the table's overlay, as of the
        plan's current version (a publish moves the table to its version this way)."""
        version = self._plan_version(plan_id)
        keys_list = sorted(keys)
        found: dict[str, list[Entry]] = {key: [] for key in keys_list}
        with self._cursor() as cursor:
            for start in range(0, len(keys_list), _CHUNK):
                chunk = keys_list[start : start + _CHUNK]
                self._select_routes(cursor, plan_id, chunk, version)
                for values in cursor.fetchall():
                    entry = entry_of(values)
                    found[entry[0].prefix].append(entry)
        table.note({key: tuple(entries) for key, entries in found.items()}, version)
        if len(table.overlay) > _MAX_OVERLAY:
            self._schedule_build(plan_id)

    def load_table(self, plan_id: int) -> PrefixTable:
        """Read a plan's whole prefix table from the database, packed: the version calls
        use (the saved routes of a plan that is not staged)."""
        version = self._plan_version(plan_id)
        table = PrefixTable(self._pools)
        table.state = (version, {})
        # A server-side cursor on PostgreSQL: rows stream in, the result is never
        # held whole in this process.
        connection = connections[self.using]
        with transaction.atomic(using=self.using), connection.chunked_cursor() as cursor:
            self._select_routes(cursor, plan_id, None, version)
            while rows := cursor.fetchmany(10_000):
                for values in rows:
                    table.append(values)
        return table.finish()

    # --- Builds ----------------------------------------------------------------------

    def _schedule_build(self, plan_id: int) -> None:
        """Rebuild a plan's table; the database answers for it meanwhile."""
        with self._lock:
            self._tables.pop(plan_id, None)
            already = plan_id in self._building
            self._building[plan_id] = None  # (re)start from a fresh read
        if not self.background:
            self._build(plan_id)
        elif not already:
            self._queue.put(plan_id)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="route-table-builder", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        try:
            while True:
                try:
                    plan_id = self._queue.get(timeout=5)
                except queue.Empty:
                    return
                try:
                    self._build(plan_id)
                except DatabaseError:
                    logger.exception("building the route table of plan %s failed", plan_id)
                    with self._lock:
                        self._building[plan_id] = None
                    time.sleep(1)
                    self._queue.put(plan_id)
        finally:
            connections[self.using].close()

    def _build(self, plan_id: int) -> None:
        while True:
            with self._lock:
                if plan_id not in self._building:
                    return  # the plan was deleted meanwhile
                self._building[plan_id] = set()
            started = time.monotonic()
            table = self.load_table(plan_id)
            while True:
                with self._lock:
                    pending = self._building.get(plan_id, set())
                    if pending is None:
                        break  # another full change came in: read again
                    if not pending:
                        if plan_id in self._building:
                            del self._building[plan_id]
                            self._tables[plan_id] = table
                        logger.info(
                            "route table of plan %s compiled: %d prefixes in %.1f s",
                            plan_id,
                            len(table),
                            time.monotonic() - started,
                        )
                        return
                    self._building[plan_id] = set()
                self._reload_prefixes(table, plan_id, pending)


_tables: ProcessLocal[CompiledRouteTable] = ProcessLocal(
    lambda using: CompiledRouteTable(using, poller=threads_allowed(), background=threads_allowed())
)


def compiled_route_table(using: str = "default") -> CompiledRouteTable:
    """This process's compiled table (one per process: a forked worker gets its own).

    It polls from a thread of its own, started on first use.
    """
    return _tables.get(using)


def forget_compiled_tables() -> None:
    """Stop and drop this process's compiled tables (tests switch databases between them)."""
    for table in _tables.forget():
        table.stop()
