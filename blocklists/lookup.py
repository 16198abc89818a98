"""Whether a call is blocked: a per-process compiled store of every active blocklist.

The question, answered from memory (no query), in time independent of list sizes:

    blocked(tenant_id, customer_id, caller, callee, address) -> Block | None

`caller` and `callee` are the digits the resolver matches on (None when the number
is not one), `address` the call's source address (None when unknown). The lists
that apply are the tenant's active lists without a customer, and those of
`customer_id`. They are tried in one order, so the same call is always blocked by
the same list: source lists, then caller lists, then callee lists; within a kind,
the customer's own lists before the tenant's, then by name. Within a list, the most
specific entry answers: the exact number, else the longest prefix; for networks,
the longest network containing the address.

How a list is kept (`PackedNumbers`, `PackedNetworks`):

- numbers: each entry is one 64-bit integer, int("1" + digits) (unique for every
  digit string of up to 18 digits), in two sorted `array('Q')`: exact numbers and
  prefixes, plus a bit mask of the prefix lengths present. A lookup is one bisect
  for the exact number and one per prefix length present that the number has
  (at most 18): O(log n) each, 8 bytes per entry;
- networks: per IP version and prefix length present, a sorted array of the
  network addresses (IPv4: 4 bytes each; IPv6 up to /64: the upper 64 bits, 8
  bytes; longer IPv6 networks: Python integers), longest length first.

For the resolver (routing sits below blocklists in the layers, so it never imports
this module): the setting ROUTING_SCREEN_SOURCE names `compiled_source` (this
process's store) or `database_source` (indexed queries, always current); either
returns an object with `blocked(...)` as above (routing.resolver.Screen).

Kept current like routing.compiled.live: every `poll_interval` seconds (0.2 s), from a
poller thread of its own (so a hung database holds no decision: built lists keep
answering from memory), one primary-key read of the route-table version
(routing.changes); when it moved, the
`blocklist` changes name the lists to reload (blocklists.services records them in
the writing transaction; an import records one for the whole list). A list's row
is re-read at once; its entries are rebuilt in a background thread, and the list is
answered from the database (one indexed query) meanwhile, so an answer is never
staler than the poll interval.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import threading
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass

from django.db import DatabaseError, connections, transaction

from blocklists.models import Blocklist, BlocklistEntry
from blocklists.values import CALLEE, CALLER, EXACT, MAX_DIGITS, NETWORK, PREFIX, SOURCE
from routing import changes
from routing.process_local import ProcessLocal, threads_allowed
from routing.process_local import close_connection as _close
from tenants.networks import IPAddress, containing_networks, prefix_length

logger = logging.getLogger(__name__)

_MAX_DELTA = 20_000  # beyond this many changes at once, reload everything
KIND_ORDER = {SOURCE: 0, CALLER: 1, CALLEE: 2}


@dataclass(frozen=True, slots=True)
class Block:
    """Why a call is blocked: the list, the SIP answer and the entry that matched."""

    list_id: int
    list_name: str
    kind: str  # caller, callee or source
    code: int
    reason: str
    value: str  # the entry: digits or a network
    match: str  # exact, prefix or network
    customer_id: int | None = None  # the list's customer (None: the tenant's list)


@dataclass(frozen=True, slots=True)
class ListRef:
    """A list's row without its entries."""

    id: int
    tenant_id: int
    customer_id: int | None
    name: str
    kind: str
    code: int
    reason: str
    is_active: bool

    @property
    def order(self) -> tuple[int, bool, str]:
        return KIND_ORDER[self.kind], self.customer_id is None, self.name

    def block(self, value: str, match: str) -> Block:
        return Block(
            self.id, self.name, self.kind, self.code, self.reason, value, match, self.customer_id
        )


_REF_FIELDS = (
    "pk",
    "tenant_id",
    "customer_id",
    "name",
    "kind",
    "reply_code",
    "reply_reason",
    "is_active",
)


def list_refs(using: str = "default", **filters: object) -> list[ListRef]:
    return [
        ListRef(*row)
        for row in Blocklist.objects.using(using).filter(**filters).values_list(*_REF_FIELDS)
    ]


def applicable(refs: list[ListRef], customer_id: int | None) -> list[ListRef]:
    """The active lists of `refs` that apply to a call of `customer_id`, in screening order."""
    return sorted(
        (
            ref
            for ref in refs
            if ref.is_active and (ref.customer_id is None or ref.customer_id == customer_id)
        ),
        key=lambda ref: ref.order,
    )


# --- Packed lists -----------------------------------------------------------------------


def number_key(digits: str) -> int:
    return int("1" + digits)


class PackedNumbers:
    """A caller or callee list: sorted 64-bit keys of its exact numbers and its prefixes."""

    __slots__ = ("exact", "lengths", "prefixes")

    def __init__(self) -> None:
        self.exact = array("Q")
        self.prefixes = array("Q")
        self.lengths = 0  # bit n set: some prefix has n digits

    def __len__(self) -> int:
        return len(self.exact) + len(self.prefixes)

    def add(self, value: str, match: str) -> None:
        if match == PREFIX:
            self.prefixes.append(number_key(value))
            self.lengths |= 1 << len(value)
        else:
            self.exact.append(number_key(value))

    def finish(self) -> PackedNumbers:
        for name in ("exact", "prefixes"):
            keys = getattr(self, name)
            if any(keys[i] > keys[i + 1] for i in range(len(keys) - 1)):
                setattr(self, name, array("Q", sorted(keys)))
        return self

    def find(self, digits: str) -> tuple[str, str] | None:
        """(entry, match) of the most specific entry matching `digits` (the hot path)."""
        size = len(digits)
        exact = self.exact
        if exact and size <= MAX_DIGITS:
            key = number_key(digits)
            i = bisect_left(exact, key)
            if i < len(exact) and exact[i] == key:
                return digits, EXACT
        lengths, prefixes = self.lengths, self.prefixes
        for length in range(min(size, MAX_DIGITS), 0, -1):
            if lengths >> length & 1:
                key = number_key(digits[:length])
                i = bisect_left(prefixes, key)
                if i < len(prefixes) and prefixes[i] == key:
                    return digits[:length], PREFIX
        return None


_V4_TYPE = "I" if array("I").itemsize == 4 else "L"


class PackedNetworks:
    """A source list: per IP version and prefix length, the sorted network addresses."""

    __slots__ = ("_pending", "count", "levels")

    def __init__(self) -> None:
        self.levels: dict[int, list[tuple[int, int, int, object]]] = {4: [], 6: []}
        self.count = 0
        self._pending: dict[tuple[int, int], list[int]] = {}

    def __len__(self) -> int:
        return self.count

    def add(self, value: str, match: str = NETWORK) -> None:
        network = ipaddress.ip_network(value)
        key = (network.version, network.prefixlen)
        self._pending.setdefault(key, []).append(int(network.network_address))
        self.count += 1

    def finish(self) -> PackedNetworks:
        for (version, length), addresses in sorted(self._pending.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            mask = ((1 << length) - 1) << (bits - length)
            addresses.sort()
            if version == 4:
                shift, keys = 0, array(_V4_TYPE, addresses)
            elif length <= 64:
                shift, keys = 64, array("Q", (a >> 64 for a in addresses))
            else:
                shift, keys = 0, addresses
            self.levels[version].append((length, mask, shift, keys))
        del self._pending
        return self

    def find(self, address: IPAddress) -> tuple[str, str] | None:
        value = int(address)
        for length, mask, shift, keys in self.levels[address.version]:
            key = (value & mask) >> shift
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                network = ipaddress.ip_network((value & mask, length))
                return str(network), NETWORK
        return None


def load_list(ref: ListRef, using: str = "default") -> PackedNumbers | PackedNetworks:
    """Read one list's entries from the database, packed."""
    packed = PackedNetworks() if ref.kind == SOURCE else PackedNumbers()
    connection = connections[using]
    with transaction.atomic(using=using), connection.chunked_cursor() as cursor:
        cursor.execute(
            "SELECT value, match FROM blocklists_blocklistentry WHERE list_id = %s", [ref.id]
        )
        add = packed.add
        while rows := cursor.fetchmany(20_000):
            for value, match in rows:
                add(value, match)
    return packed.finish()


def probe_of(ref: ListRef, caller: str | None, callee: str | None, address: IPAddress | None):
    return {CALLER: caller, CALLEE: callee, SOURCE: address}[ref.kind]


def find_in_database(
    ref: ListRef, probe: str | IPAddress, using: str = "default"
) -> tuple[str, str] | None:
    """The most specific entry of one list matching `probe`: one indexed query."""
    if ref.kind == SOURCE:
        candidates = containing_networks(probe)
    else:
        candidates = [probe[:n] for n in range(1, min(len(probe), MAX_DIGITS) + 1)]
    if not candidates:
        return None
    hits = list(
        BlocklistEntry.objects.using(using)
        .filter(list_id=ref.id, value__in=candidates)
        .values_list("value", "match")
    )
    return _most_specific(ref, str(probe), hits) if hits else None


# --- The store --------------------------------------------------------------------------


class BlockStore:
    """Every active list, compiled in this process and kept current (see the module doc)."""

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
        self.version: int | None = None  # None until the first load
        self._refs: dict[int, ListRef] = {}
        self._by_tenant: dict[int, list[ListRef]] = {}  # active lists, in screening order
        self._packed: dict[int, PackedNumbers | PackedNetworks] = {}
        self._building: dict[int, int] = {}  # list id -> generation of the build
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._next_check = 0.0
        self._queue: queue.Queue[int] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- The answer -------------------------------------------------------------------

    def blocked(
        self,
        tenant_id: int,
        customer_id: int | None,
        caller: str | None,
        callee: str | None,
        address: IPAddress | None,
    ) -> Block | None:
        self._maybe_refresh()
        if self.version is None:  # never loaded (the database failed): ask it directly
            return database_blocked(tenant_id, customer_id, caller, callee, address, self.using)
        for ref in self._by_tenant.get(tenant_id, ()):
            if ref.customer_id is not None and ref.customer_id != customer_id:
                continue
            probe = caller if ref.kind == CALLER else callee if ref.kind == CALLEE else address
            if probe is None:
                continue
            packed = self._packed.get(ref.id)
            if packed is not None:
                found = packed.find(probe)
            else:  # being built: the database answers for this list meanwhile
                found = find_in_database(ref, probe, self.using)
            if found is not None:
                return ref.block(*found)
        return None

    # --- Freshness --------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether every active list is answered from memory (no build pending)."""
        return self.version is not None and not self._building

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._maybe_refresh()
            if self.ready() or time.monotonic() > deadline:
                return self.ready()
            time.sleep(0.02)

    def is_built(self, list_id: int) -> bool:
        return list_id in self._packed

    def packed(self, list_id: int) -> PackedNumbers | PackedNetworks | None:
        return self._packed.get(list_id)

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
            logger.exception("blocklist store refresh failed; serving version %s", self.version)
        finally:
            self._refreshing.release()

    def _start_poller(self) -> None:
        with self._lock:
            if self._stopping.is_set() or (self._poller is not None and self._poller.is_alive()):
                return
            self._poller = threading.Thread(
                target=self._poll, name="blocklist-store-poller", daemon=True
            )
            self._poller.start()

    def _poll(self) -> None:
        """Refresh every poll interval until stop(); a hung database holds only this thread
        (as routing.compiled.live's poller: built lists keep answering from memory)."""
        failing = False
        try:
            while not self._stopping.is_set():
                try:
                    self.refresh()
                except DatabaseError as exc:
                    if not failing:
                        logger.error(
                            "blocklists: the database does not answer (%s); serving "
                            "version %s from memory until it does",
                            str(exc).strip() or type(exc).__name__,
                            self.version,
                        )
                    failing = True
                    _close(self.using)  # a broken connection is reopened next time
                else:
                    if failing:
                        logger.warning("blocklists: the database answers again")
                    failing = False
                self._stopping.wait(self.poll_interval)
        finally:
            _close(self.using)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the poller (tests switch databases; a process simply exits)."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(timeout)

    def refresh(self) -> None:
        """Bring the store up to the database's current version now."""
        version = changes.current_version(self.using)
        known = self.version
        if known is None or version < known or version - known > _MAX_DELTA:
            self._load_all(version)
            return
        if version == known:
            return
        oldest = changes.oldest_version(self.using)
        if oldest is not None and oldest > known + 1:  # pruned past what we know
            self._load_all(version)
            return
        rows, entries = set(), set()
        for change in changes.changes_between(known, version, self.using):
            if change.kind != changes.BLOCKLIST:
                continue
            pk, _, what = change.key.partition(":")
            if pk.isdigit():
                rows.add(int(pk))
                if what != "meta":
                    entries.add(int(pk))
        if rows:
            self._apply(rows, entries)
        self.version = version

    def _apply(self, ids: set[int], rebuild: set[int]) -> None:
        found = {ref.id: ref for ref in list_refs(self.using, pk__in=ids)}
        with self._lock:
            refs = dict(self._refs)
            for pk in ids:
                ref = found.get(pk)
                if ref is None or not ref.is_active:  # deleted, or blocks nothing now
                    if ref is None:
                        refs.pop(pk, None)
                    else:
                        refs[pk] = ref
                    self._packed.pop(pk, None)
                    self._building.pop(pk, None)
                    continue
                old = refs.get(pk)
                refs[pk] = ref
                changed = pk in rebuild or (old is not None and old.kind != ref.kind)
                missing = pk not in self._packed and pk not in self._building
                if changed or missing:  # new entries, or (re)activated
                    self._schedule_build(pk)
            self._set_refs(refs)

    def _set_refs(self, refs: dict[int, ListRef]) -> None:
        by_tenant: dict[int, list[ListRef]] = {}
        for ref in refs.values():
            if ref.is_active:
                by_tenant.setdefault(ref.tenant_id, []).append(ref)
        for lists in by_tenant.values():
            lists.sort(key=lambda ref: ref.order)
        self._refs, self._by_tenant = refs, by_tenant

    def _load_all(self, version: int) -> None:
        refs = {ref.id: ref for ref in list_refs(self.using)}
        with self._lock:
            self._packed = {}
            self._building = {}
            self._set_refs(refs)
            self.version = version
            for ref in refs.values():
                if ref.is_active:
                    self._schedule_build(ref.id)

    # --- Builds -----------------------------------------------------------------------

    def _schedule_build(self, list_id: int) -> None:
        """Rebuild a list's entries; the database answers for it meanwhile."""
        with self._lock:
            self._packed.pop(list_id, None)
            already = list_id in self._building
            self._building[list_id] = self._building.get(list_id, 0) + 1
        if not self.background:
            self._build(list_id)
        elif not already:
            self._queue.put(list_id)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="blocklist-store-builder", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        try:
            while True:
                try:
                    list_id = self._queue.get(timeout=5)
                except queue.Empty:
                    return
                try:
                    self._build(list_id)
                except DatabaseError:
                    logger.exception("building blocklist %s failed", list_id)
                    time.sleep(1)
                    self._queue.put(list_id)
        finally:
            connections[self.using].close()

    def _build(self, list_id: int) -> None:
        while True:
            with self._lock:
                generation = self._building.get(list_id)
                ref = self._refs.get(list_id)
            if generation is None or ref is None:
                return
            started = time.monotonic()
            packed = load_list(ref, self.using)
            with self._lock:
                if self._building.get(list_id) != generation:
                    continue  # changed again while we read: read again
                del self._building[list_id]
                if self._refs.get(list_id) is ref:
                    self._packed[list_id] = packed
            logger.info(
                "blocklist %s (%s) compiled: %d entries in %.1f s",
                ref.name,
                ref.kind,
                len(packed),
                time.monotonic() - started,
            )
            return


_stores: ProcessLocal[BlockStore] = ProcessLocal(
    lambda using: BlockStore(using, poller=threads_allowed(), background=threads_allowed())
)


def block_store(using: str = "default") -> BlockStore:
    """This process's blocklist store (one per process: a forked worker gets its own).

    It polls from a thread of its own, started on first use, so no decision waits on
    the database for it.
    """
    return _stores.get(using)


def forget_block_stores() -> None:
    """Stop and drop this process's stores (tests switch databases between them)."""
    for store in _stores.forget():
        store.stop()


def database_blocked(
    tenant_id: int,
    customer_id: int | None,
    caller: str | None,
    callee: str | None,
    address: IPAddress | None,
    using: str = "default",
) -> Block | None:
    """blocked() from the database: one indexed query for every applicable list's
    candidate entries (the numbers' prefixes, the networks containing the address)."""
    branches, params = [], []
    for kind, candidates in (
        (CALLER, _prefixes(caller)),
        (CALLEE, _prefixes(callee)),
        (SOURCE, containing_networks(address) if address is not None else []),
    ):
        if candidates:
            marks = ", ".join(["%s"] * len(candidates))
            branches.append(f"(e.list_id {_LISTS[vendor(using)]} AND e.value IN ({marks}))")
            params += [tenant_id, kind, customer_id, *candidates]
    if not branches:
        return None
    with connections[using].cursor() as cursor:
        cursor.execute(_CANDIDATES_SQL + " OR ".join(branches), params)
        rows = cursor.fetchall()
    found: dict[ListRef, list[tuple[str, str]]] = {}
    for *ref, value, match in rows:
        found.setdefault(ListRef(*ref[:7], bool(ref[7])), []).append((value, match))
    for ref in sorted(found, key=lambda ref: ref.order):
        probe = probe_of(ref, caller, callee, address)
        best = _most_specific(ref, str(probe), found[ref])
        if best is not None:
            return ref.block(*best)
    return None


def vendor(using: str) -> str:
    return "postgresql" if connections[using].vendor == "postgresql" else "other"


def _prefixes(digits: str | None) -> list[str]:
    return [digits[:n] for n in range(1, min(len(digits), MAX_DIGITS) + 1)] if digits else []


# The entries of the applicable lists among the candidate values, per kind of list. On
# PostgreSQL the lists' ids go in as an array, so that the index on (list, value)
# answers each kind's branch (an IN (subquery) makes it scan every entry).
_APPLICABLE = (
    "SELECT id FROM blocklists_blocklist WHERE tenant_id = %s AND is_active AND kind = %s "
    "AND (customer_id IS NULL OR customer_id = %s)"
)
_LISTS = {"postgresql": f"= ANY(ARRAY({_APPLICABLE}))", "other": f"IN ({_APPLICABLE})"}
_CANDIDATES_SQL = (
    "SELECT l.id, l.tenant_id, l.customer_id, l.name, l.kind, l.reply_code, l.reply_reason, "
    "l.is_active, e.value, e.match FROM blocklists_blocklistentry e "
    "JOIN blocklists_blocklist l ON l.id = e.list_id WHERE "
)


def _most_specific(ref: ListRef, probe: str, hits: list[tuple[str, str]]) -> tuple[str, str] | None:
    """Of a list's candidate entries, the one that answers: the longest network; the exact
    number, else the longest prefix (an exact entry of a shorter number is no match)."""
    if ref.kind == SOURCE:
        return max(hits, key=lambda hit: prefix_length(hit[0]))
    if (probe, EXACT) in hits:
        return probe, EXACT
    prefixes = [hit for hit in hits if hit[1] == PREFIX]
    return max(prefixes, key=lambda hit: len(hit[0])) if prefixes else None


class CompiledScreen:
    """ROUTING_SCREEN_SOURCE with the compiled route table: this process's store.

    Holds no state: each call goes to this process's store, so an object made before
    a fork answers from the child's own store.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def blocked(self, tenant_id, customer_id, caller, callee, address) -> Block | None:
        return block_store(self.using).blocked(tenant_id, customer_id, caller, callee, address)

    def wait_ready(self, timeout: float) -> bool:
        """Load this process's store now (a web worker's warm-up, deploy/gunicorn.conf.py)."""
        return block_store(self.using).wait_ready(timeout)


class DatabaseScreen:
    """The lists read straight from the database: always current (the database route table)."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def blocked(self, tenant_id, customer_id, caller, callee, address) -> Block | None:
        return database_blocked(tenant_id, customer_id, caller, callee, address, self.using)


def compiled_source(using: str = "default") -> CompiledScreen:
    return CompiledScreen(using)


def database_source(using: str = "default") -> DatabaseScreen:
    return DatabaseScreen(using)
