"""A compiled route table: each process keeps a packed copy in memory, kept current.

`CompiledRouteTable` answers the RouteTable protocol (routing.resolver) from memory,
so a decision costs no query, except one primary-key read of the route-table
version at most every `poll_interval` seconds (0.2 s). When the version moved, it
reads the change log (routing.changes) and reloads only what changed: a prefix and
its targets, a trunk, a carrier's trunks, a tenant, the source networks. A change
is therefore used by every process, on every host, within the poll interval.

A tenant's whole table is (re)built in a background thread when the process
starts and after an import; until it is ready, that tenant is answered from the
database (DatabaseRouteTable: current, only slower). So no answer is ever staler
than the poll interval, and a restart does not wait for a million rows.

Memory: a tenant's prefixes live in parallel arrays sorted by an integer key
(about 60 bytes per prefix with its targets, instead of several hundred as
Python objects); the repeated parts of a route (bounds, action, reject, trunk,
priority and weight of its targets) are shared profiles. Changes since the build
sit in a small overlay dict that is consulted first.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable

from django.db import DatabaseError, connections, transaction

from routing import changes
from routing.resolver import PrefixRow, TargetRow, TenantRef
from routing.tables import DatabaseRouteTable
from tenants.networks import IPAddress, NetworkIndex

logger = logging.getLogger(__name__)

# Prefixes of at most this many digits are keyed by int("1" + prefix), which fits
# a signed 64-bit array item; longer ones (rare) live in a dict.
_KEY_DIGITS = 18
# Beyond this many changes at once, rebuilding is cheaper than applying them.
_MAX_DELTA = 20_000
# An overlay this large means the packed arrays are mostly outdated: rebuild.
_MAX_OVERLAY = 50_000
_CHUNK = 500
_LONG_BASE = 5 * 10**18

# (target id, trunk id, priority, weight) of one target of a prefix.
Target = tuple[int, int, int, int]
Entry = tuple[PrefixRow, tuple[Target, ...]]

_TRUNK_SQL = """
SELECT tr.id, tr.name, tr.is_active, c.name, c.is_active, tr.host, tr.port, tr.transport,
       tr.outbound_proxy, tr.socket, tr.path, tr.tech_prefix, tr.strip_digits,
       tr.from_display, tr.from_uri, tr.rewrite_to, tr.extra_headers, tr.branch_flags,
       tr.fr_timer, tr.fr_inv_timer
FROM routing_trunk tr JOIN routing_carrier c ON c.id = tr.carrier_id
"""
# The targets of each prefix as two strings: the ids, and the profile (trunk:priority:
# weight,...) which is the same for thousands of prefixes and is parsed once.
_PREFIX_SQL = {
    "postgresql": """
SELECT p.id, p.prefix, p.min_length, p.max_length, p.action, p.routing_mode,
       p.reject_code, p.reject_reason, p.is_active, p.description, t.ids, t.profile
FROM routing_dialprefix p LEFT JOIN LATERAL (
    SELECT string_agg(t.id::text, ',' ORDER BY t.id) AS ids,
           string_agg(t.trunk_id || ':' || t.priority || ':' || t.weight, ',' ORDER BY t.id)
             AS profile
    FROM routing_routetarget t WHERE t.prefix_id = p.id) t ON true
WHERE p.tenant_id = %s {where}
ORDER BY length(p.prefix), p.prefix COLLATE "C"
""",
    "sqlite": """
SELECT p.id, p.prefix, p.min_length, p.max_length, p.action, p.routing_mode,
       p.reject_code, p.reject_reason, p.is_active, p.description,
  (SELECT group_concat(id, ',') FROM (SELECT t.id FROM routing_routetarget t
     WHERE t.prefix_id = p.id ORDER BY t.id)),
  (SELECT group_concat(x, ',') FROM (SELECT t.trunk_id || ':' || t.priority || ':' || t.weight
     AS x FROM routing_routetarget t WHERE t.prefix_id = p.id ORDER BY t.id))
FROM routing_dialprefix p
WHERE p.tenant_id = %s {where}
ORDER BY length(p.prefix), p.prefix
""",
}


def _odd_at_least(value: int) -> int:
    return max(value, 1021) | 1


def _key(prefix: str) -> int:
    return int("1" + prefix)


def _parse_profile(text: str | None) -> tuple[tuple[int, int, int], ...]:
    if not text:
        return ()
    return tuple(tuple(int(part) for part in item.split(":")) for item in text.split(","))


def _parse_ids(text: str | None) -> list[int]:
    return [int(part) for part in text.split(",")] if text else []


class PrefixTable:
    """One tenant's prefixes, packed into arrays, plus an overlay of later changes."""

    def __init__(self) -> None:
        self.keys = array("q")  # sorted int("1" + prefix)
        self.long: dict[str, int] = {}  # prefixes longer than _KEY_DIGITS -> index
        self.ids = array("q")
        self.shape = array("I")  # index into self.shapes
        self.text = array("I")  # index into self.texts (descriptions)
        self.target_start = array("I")  # index into self.target_ids
        self.profile = array("I")  # index into self.profiles
        self.target_ids = array("q")
        self.shapes: list[tuple] = []
        self.texts: list[str] = []
        self.profiles: list[tuple[tuple[int, int, int], ...]] = []
        self.overlay: dict[str, Entry | None] = {}
        self.longest = 0  # digits of the longest prefix: longer candidates cannot match
        self.size1 = self.size2 = 1
        self.filter1 = self.filter2 = bytearray(1)  # see _build_filter()
        self._interned: dict = {}

    def _intern(self, pool: list, value) -> int:
        index = self._interned.get((id(pool), value))
        if index is None:
            index = self._interned[(id(pool), value)] = len(pool)
            pool.append(value)
        return index

    def append(self, row: tuple) -> None:
        """Add one row of _PREFIX_SQL; rows come in key order (checked in finish())."""
        pid, prefix, min_len, max_len, action, mode, code, reason, active, desc, ids, prof = row
        index = len(self.ids)
        self.longest = max(self.longest, len(prefix))
        if len(prefix) <= _KEY_DIGITS:
            self.keys.append(_key(prefix))
        else:
            # A placeholder above every real key (those are < 2 * 10**18), in SQL order.
            self.long[prefix] = index
            self.keys.append(_LONG_BASE + index)
        self.ids.append(pid)
        self.shape.append(
            self._intern(
                self.shapes, (min_len, max_len, action, mode, code, reason or "", bool(active))
            )
        )
        self.text.append(self._intern(self.texts, desc or ""))
        self.target_start.append(len(self.target_ids))
        profile_index = self._interned.get(("profile", prof))
        if profile_index is None:
            profile_index = self._interned[("profile", prof)] = len(self.profiles)
            self.profiles.append(_parse_profile(prof))
        self.profile.append(profile_index)
        self.target_ids.extend(_parse_ids(ids))

    def finish(self) -> PrefixTable:
        keys = self.keys
        if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
            self._sort()
        self._interned = {}
        self._build_filter()
        return self

    def _sort(self) -> None:
        """Reorder the arrays by key (a database whose collation did not sort digits)."""
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        starts, ids = self.target_start, self.target_ids
        ends = [*starts[1:], len(ids)]
        self.target_ids = array("q")
        new_starts = array("I")
        for i in order:
            new_starts.append(len(self.target_ids))
            self.target_ids.extend(ids[starts[i] : ends[i]])
        self.target_start = new_starts
        for name in ("keys", "ids", "shape", "text", "profile"):
            old = getattr(self, name)
            setattr(self, name, array(old.typecode, (old[i] for i in order)))
        position = {old: new for new, old in enumerate(order)}
        self.long = {prefix: position[index] for prefix, index in self.long.items()}

    def _index(self, prefix: str) -> int | None:
        if len(prefix) > _KEY_DIGITS:
            return self.long.get(prefix)
        key = _key(prefix)
        keys = self.keys
        i = bisect_left(keys, key)
        return i if i < len(keys) and keys[i] == key else None

    def find_all(self, candidates: list[str]) -> list[Entry]:
        """The entries of those `candidates` that are in the table (the hot path)."""
        overlay, keys, longest = self.overlay, self.keys, self.longest
        filter1, filter2, size1, size2 = self.filter1, self.filter2, self.size1, self.size2
        size = len(keys)
        found = []
        for prefix in candidates:
            if len(prefix) > longest:
                continue
            if overlay and prefix in overlay:
                entry = overlay[prefix]
                if entry is not None:
                    found.append(entry)
                continue
            if len(prefix) > _KEY_DIGITS:
                i = self.long.get(prefix)
                if i is not None:
                    found.append(self._entry(i, prefix))
                continue
            key = int("1" + prefix)
            if not (filter1[key % size1] and filter2[key % size2]):
                continue  # surely absent: most candidates end here, without a bisect
            i = bisect_left(keys, key)
            if i < size and keys[i] == key:
                found.append(self._entry(i, prefix))
        return found

    def _build_filter(self) -> None:
        """Two one-byte-per-slot hash filters over the keys (a Bloom filter, k=2).

        A bisect costs 1-4 us of Python per candidate; the filters answer "surely
        not there" for ~92% of absent candidates in a fraction of that, for about
        6 bytes per prefix.
        """
        self.size1 = _odd_at_least(3 * len(self.keys))
        self.size2 = _odd_at_least(self.size1 + 2 * 1024 + 2)
        self.filter1 = bytearray(self.size1)
        self.filter2 = bytearray(self.size2)
        for key in self.keys:
            self.filter1[key % self.size1] = 1
            self.filter2[key % self.size2] = 1

    def note(self, changed: dict[str, Entry | None]) -> None:
        """Put reloaded rows (None: deleted) in the overlay."""
        self.overlay.update(changed)
        self.longest = max([self.longest, *(len(k) for k, v in changed.items() if v)])

    def lookup(self, prefix: str) -> Entry | None:
        if prefix in self.overlay:
            return self.overlay[prefix]
        i = self._index(prefix)
        return None if i is None else self._entry(i, prefix)

    def _entry(self, i: int, prefix: str) -> Entry:
        shape = self.shapes[self.shape[i]]
        row = PrefixRow(self.ids[i], prefix, *shape, description=self.texts[self.text[i]])
        start = self.target_start[i]
        ids = self.target_ids
        targets = tuple(
            (ids[start + n], trunk, priority, weight)
            for n, (trunk, priority, weight) in enumerate(self.profiles[self.profile[i]])
        )
        return row, targets


def _entry(row: tuple) -> Entry:
    pid, prefix, min_len, max_len, action, mode, code, reason, active, desc, ids, prof = row
    prefix_row = PrefixRow(
        pid, prefix, min_len, max_len, action, mode, code, reason or "", bool(active), desc or ""
    )
    targets = tuple(
        (target_id, *profile)
        for target_id, profile in zip(_parse_ids(ids), _parse_profile(prof), strict=True)
    )
    return prefix_row, targets


class CompiledRouteTable:
    """The route tables compiled in memory, refreshed from the change log (see module doc)."""

    def __init__(
        self, using: str = "default", *, poll_interval: float = 0.2, background: bool = True
    ) -> None:
        self.using = using
        self.poll_interval = poll_interval
        self.background = background
        self.database = DatabaseRouteTable(using)
        self.version: int | None = None  # None until the first load
        self._tenants: dict[int, TenantRef] = {}
        self._slugs: dict[str, int] = {}
        self._sources: NetworkIndex[int] = NetworkIndex(())
        self._trunks: dict[int, tuple] = {}
        self._tables: dict[int, PrefixTable] = {}  # tenants whose table is ready
        # Tenants being built: the prefixes changed meanwhile, or None to start over.
        self._building: dict[int, set[str] | None] = {}
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._next_check = 0.0
        self._memo = threading.local()
        self._queue: queue.Queue[int] = queue.Queue()
        self._worker: threading.Thread | None = None

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

    def prefixes(self, tenant_id: int, candidates: list[str]) -> list[PrefixRow]:
        table = self._tables.get(tenant_id)
        if table is None:
            self._memo.targets = None
            return self.database.prefixes(tenant_id, candidates)
        found = table.find_all(candidates)
        self._memo.targets = {row.id: targets for row, targets in found}
        return [row for row, _ in found]

    def targets(self, prefix_id: int) -> list[TargetRow]:
        memo = getattr(self._memo, "targets", None)
        if not memo or prefix_id not in memo:
            return self.database.targets(prefix_id)
        trunks = self._trunks
        return [
            TargetRow(target_id, priority, weight, trunk_id, *trunks[trunk_id])
            for target_id, trunk_id, priority, weight in memo[prefix_id]
            if trunk_id in trunks
        ]

    # --- Freshness -------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether every tenant is answered from memory (no build pending)."""
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

    def _load_all(self, version: int) -> None:
        with self._lock:
            self._load_tenants(None)
            self._load_sources()
            self._load_trunks(None, None)
            self._tables = {}
            self.version = version
            for tenant_id in list(self._tenants):
                self._schedule_build(tenant_id)

    def _apply(self, batch: list[changes.Change]) -> None:
        kinds: dict[str, set] = defaultdict(set)
        prefixes: dict[int, set[str]] = defaultdict(set)
        for change in batch:
            if change.kind == changes.PREFIX:
                prefixes[change.tenant_id].add(change.key)
            elif change.kind in (changes.CARRIER, changes.TRUNK):
                kinds[change.kind].add(int(change.key))
            else:
                kinds[change.kind].add(change.tenant_id)
        with self._lock:
            if kinds[changes.TENANT]:
                self._load_tenants(kinds[changes.TENANT])
            if kinds[changes.SOURCES]:
                self._load_sources()
            if kinds[changes.CARRIER] or kinds[changes.TRUNK]:
                self._load_trunks(kinds[changes.CARRIER], kinds[changes.TRUNK])
            for tenant_id in kinds[changes.TABLE] | (kinds[changes.TENANT] - self._known()):
                if tenant_id in self._tenants:
                    self._schedule_build(tenant_id)
            for tenant_id, keys in prefixes.items():
                if tenant_id in self._building:
                    pending = self._building[tenant_id]
                    if pending is not None:
                        pending |= keys
                elif tenant_id in self._tables:
                    self._reload_prefixes(self._tables[tenant_id], tenant_id, keys)

    def _known(self) -> set[int]:
        return set(self._tables) | set(self._building)

    # --- Loading ---------------------------------------------------------------------

    def _cursor(self):
        return connections[self.using].cursor()

    def _load_tenants(self, ids: set[int] | None) -> None:
        sql = "SELECT id, slug, name, is_active FROM tenants_tenant"
        params: list = []
        if ids is not None:
            sql += f" WHERE id IN ({', '.join(['%s'] * len(ids))})"
            params = list(ids)
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            found = {row[0]: TenantRef(row[0], row[1], row[2], bool(row[3])) for row in cursor}
        tenants = dict(self._tenants) if ids is not None else {}
        for tenant_id in ids or ():
            tenants.pop(tenant_id, None)
        tenants.update(found)
        for tenant_id in set(self._tenants) - set(tenants):
            self._tables.pop(tenant_id, None)
            self._building.pop(tenant_id, None)
        self._tenants = tenants
        self._slugs = {tenant.slug: tenant.id for tenant in tenants.values()}

    def _load_sources(self) -> None:
        with self._cursor() as cursor:
            cursor.execute("SELECT network, tenant_id FROM tenants_tenantsource")
            self._sources = NetworkIndex(cursor.fetchall())

    def _load_trunks(self, carrier_ids: set[int] | None, trunk_ids: set[int] | None) -> None:
        sql, params = _TRUNK_SQL, []
        if carrier_ids is not None or trunk_ids is not None:
            carrier_ids, trunk_ids = carrier_ids or {0}, trunk_ids or {0}
            sql += (
                f" WHERE tr.carrier_id IN ({', '.join(['%s'] * len(carrier_ids))})"
                f" OR tr.id IN ({', '.join(['%s'] * len(trunk_ids))})"
            )
            params = [*carrier_ids, *trunk_ids]
        with self._cursor() as cursor:
            cursor.execute(sql, params)
            found = {
                row[0]: (
                    row[1],
                    bool(row[2]),
                    row[3],
                    bool(row[4]),
                    *row[5:15],
                    bool(row[15]),
                    *row[16:],
                )
                for row in cursor
            }
        if not params:
            self._trunks = found
            return
        trunks = dict(self._trunks)
        for trunk_id in trunk_ids or ():
            trunks.pop(trunk_id, None)  # deleted unless found again
        trunks.update(found)
        self._trunks = trunks

    def _prefix_rows(self, tenant_id: int, keys: Iterable[str] | None, cursor) -> None:
        vendor = connections[self.using].vendor
        sql = _PREFIX_SQL.get(vendor, _PREFIX_SQL["sqlite"])
        if keys is None:
            cursor.execute(sql.replace("{where}", ""), [tenant_id])
        else:
            keys = list(keys)
            cursor.execute(
                sql.replace("{where}", f"AND p.prefix IN ({', '.join(['%s'] * len(keys))})"),
                [tenant_id, *keys],
            )

    def _reload_prefixes(self, table: PrefixTable, tenant_id: int, keys: set[str]) -> None:
        """Put the current rows of `keys` (None where deleted) into the table's overlay."""
        keys_list = sorted(keys)
        found: dict[str, Entry | None] = dict.fromkeys(keys_list)
        with self._cursor() as cursor:
            for start in range(0, len(keys_list), _CHUNK):
                self._prefix_rows(tenant_id, keys_list[start : start + _CHUNK], cursor)
                for row in cursor.fetchall():
                    found[row[1]] = _entry(row)
        table.note(found)
        if len(table.overlay) > _MAX_OVERLAY:
            self._schedule_build(tenant_id)

    def load_table(self, tenant_id: int) -> PrefixTable:
        """Read a tenant's whole prefix table from the database, packed."""
        table = PrefixTable()
        # A server-side cursor on PostgreSQL: rows stream in, the result is never
        # held whole in this process.
        connection = connections[self.using]
        with transaction.atomic(using=self.using), connection.chunked_cursor() as cursor:
            self._prefix_rows(tenant_id, None, cursor)
            while rows := cursor.fetchmany(10_000):
                for row in rows:
                    table.append(row)
        return table.finish()

    # --- Builds ----------------------------------------------------------------------

    def _schedule_build(self, tenant_id: int) -> None:
        """Rebuild a tenant's table; the database answers for it meanwhile."""
        with self._lock:
            self._tables.pop(tenant_id, None)
            already = tenant_id in self._building
            self._building[tenant_id] = None  # (re)start from a fresh read
        if not self.background:
            self._build(tenant_id)
        elif not already:
            self._queue.put(tenant_id)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="route-table-builder", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        try:
            while True:
                try:
                    tenant_id = self._queue.get(timeout=5)
                except queue.Empty:
                    return
                try:
                    self._build(tenant_id)
                except DatabaseError:
                    logger.exception("building the route table of tenant %s failed", tenant_id)
                    with self._lock:
                        self._building[tenant_id] = None
                    time.sleep(1)
                    self._queue.put(tenant_id)
        finally:
            connections[self.using].close()

    def _build(self, tenant_id: int) -> None:
        while True:
            with self._lock:
                if tenant_id not in self._building:
                    return  # the tenant was deleted meanwhile
                self._building[tenant_id] = set()
            started = time.monotonic()
            table = self.load_table(tenant_id)
            while True:
                with self._lock:
                    pending = self._building.get(tenant_id, set())
                    if pending is None:
                        break  # another full change came in: read again
                    if not pending:
                        if tenant_id in self._building:
                            del self._building[tenant_id]
                            self._tables[tenant_id] = table
                        logger.info(
                            "route table of tenant %s compiled: %d prefixes in %.1f s",
                            tenant_id,
                            len(table.ids),
                            time.monotonic() - started,
                        )
                        return
                    self._building[tenant_id] = set()
                self._reload_prefixes(table, tenant_id, pending)


_instances: dict[tuple[int, str], CompiledRouteTable] = {}
_instances_lock = threading.Lock()


def compiled_route_table(using: str = "default") -> CompiledRouteTable:
    """This process's compiled table (one per process: a forked worker gets its own)."""
    key = (os.getpid(), using)
    table = _instances.get(key)
    if table is None:
        with _instances_lock:
            table = _instances.setdefault(key, CompiledRouteTable(using))
    return table


def forget_compiled_tables() -> None:
    """Drop this process's compiled tables (tests switch databases between them)."""
    with _instances_lock:
        _instances.clear()
