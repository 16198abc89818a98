"""What a carrier charges for a number at a time: a per-process compiled rate store.

`rate_for(carrier_id, digits, at)` answers with the longest prefix of `digits` in
the carrier's deck in force at `at` (the deck with the latest effective_from <=
at), from memory: no query, a few probes per digit of the number. A future deck
becomes current at its time with no action, because the deck is picked by `at`.

What each process keeps (`RateStore`): for every carrier, the list of its decks
(id, effective_from, currency: a few bytes each, past ones included) and, packed,
the deck in force when the carrier was built and every future deck. A past deck is
not packed: asking for a time before the deck in force (re-rating an old call) is
answered from the database. A packed deck is parallel arrays like the compiled
route table (routing.compiled.packing): int("1" + prefix) keys sorted in an
array('q') behind two small hash filters, the rate per minute in millionths in an
array('q'), and the (connect fee, initial, next increment) triple interned, about
26 bytes per prefix.

Kept current like routing.compiled.live: at most every `poll_interval` seconds
(0.2 s) one primary-key read of the route-table version (routing.changes); when it
moved, the change log names the carriers whose decks changed (kind `deck`, written
by rating.importing and rating.services in their transaction) and those carriers
are rebuilt in a background thread. While a carrier is being built (and before
the first load), it is answered from the database with one indexed query, so an
answer is never staler than the poll interval.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import DatabaseError, connections, transaction
from django.db.models import Subquery
from django.db.models.functions import Length

from rating.models import Rate, RateDeck
from rating.rows import MAX_PREFIX, MONEY_PLACES
from routing import changes

logger = logging.getLogger(__name__)

KEY_DIGITS = 18  # int("1" + prefix) fits a signed 64-bit item up to 18 digits
_MAX_DELTA = 20_000  # beyond this many changes at once, reload everything


@dataclass(frozen=True, slots=True)
class RateMatch:
    """The rate that prices a call: the matched prefix and the deck it comes from."""

    prefix: str
    rate: Decimal  # per minute
    connect_fee: Decimal
    initial_increment: int  # seconds
    next_increment: int  # seconds
    currency: str
    deck_id: int


@dataclass(frozen=True, slots=True)
class DeckRef:
    """A deck without its rates: enough to pick the one in force at a time."""

    id: int
    effective_from: datetime
    currency: str


def _money(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-MONEY_PLACES)


def _odd_at_least(value: int) -> int:
    return max(value, 1021) | 1


class PackedDeck:
    """One deck's rates in arrays sorted by integer key, for longest-prefix lookups."""

    def __init__(self, deck: DeckRef) -> None:
        self.deck = deck
        self.keys = array("q")
        self.rates = array("q")  # per minute, in millionths
        self.terms = array("I")  # index into self.term_values
        self.term_values: list[tuple[int, int, int]] = []  # (connect fee, initial, next)
        self.long: dict[str, int] = {}  # prefixes longer than KEY_DIGITS -> index
        self.longest = 0
        self.size1 = self.size2 = 1
        self.filter1 = self.filter2 = bytearray(1)
        self._interned: dict[tuple[int, int, int], int] = {}

    def __len__(self) -> int:
        return len(self.rates)

    def append(self, prefix: str, rate: int, fee: int, initial: int, following: int) -> None:
        index = len(self.rates)
        if len(prefix) <= KEY_DIGITS:
            self.keys.append(int("1" + prefix))
        else:
            self.long[prefix] = index
            self.keys.append(5 * 10**18 + index)  # above every real key, never probed
        self.longest = max(self.longest, len(prefix))
        self.rates.append(rate)
        term = (fee, initial, following)
        slot = self._interned.get(term)
        if slot is None:
            slot = self._interned[term] = len(self.term_values)
            self.term_values.append(term)
        self.terms.append(slot)

    def finish(self) -> PackedDeck:
        keys = self.keys
        if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
            order = sorted(range(len(keys)), key=keys.__getitem__)
            for name in ("keys", "rates", "terms"):
                old = getattr(self, name)
                setattr(self, name, array(old.typecode, (old[i] for i in order)))
            position = {old: new for new, old in enumerate(order)}
            self.long = {prefix: position[i] for prefix, i in self.long.items()}
        self._interned = {}
        # Two one-byte-per-slot hash filters (a Bloom filter, k=2): most candidate
        # prefixes of a number are absent and end here, without a bisect.
        self.size1 = _odd_at_least(3 * len(self.keys))
        self.size2 = _odd_at_least(self.size1 + 2 * 1024 + 2)
        self.filter1, self.filter2 = bytearray(self.size1), bytearray(self.size2)
        for key in self.keys:
            self.filter1[key % self.size1] = 1
            self.filter2[key % self.size2] = 1
        return self

    def find(self, digits: str) -> RateMatch | None:
        """The longest prefix of `digits` in this deck (the hot path)."""
        keys, size = self.keys, len(self.keys)
        filter1, filter2, size1, size2 = self.filter1, self.filter2, self.size1, self.size2
        for length in range(min(len(digits), self.longest), 0, -1):
            prefix = digits[:length]
            if length > KEY_DIGITS:
                i = self.long.get(prefix)
                if i is not None:
                    return self._match(i, prefix)
                continue
            key = int("1" + prefix)
            if not (filter1[key % size1] and filter2[key % size2]):
                continue
            i = bisect_left(keys, key)
            if i < size and keys[i] == key:
                return self._match(i, prefix)
        return None

    def _match(self, i: int, prefix: str) -> RateMatch:
        fee, initial, following = self.term_values[self.terms[i]]
        deck = self.deck
        return RateMatch(
            prefix, _money(self.rates[i]), _money(fee), initial, following, deck.currency, deck.id
        )


@dataclass(slots=True)
class CarrierDecks:
    """A carrier's decks by effective time, and the packed ones (current and future)."""

    decks: list[DeckRef] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # effective_from timestamps, ascending
    packed: dict[int, PackedDeck] = field(default_factory=dict)

    def in_force(self, at: float) -> DeckRef | None:
        i = bisect_right(self.times, at) - 1
        return self.decks[i] if i >= 0 else None


# --- Reading the database -------------------------------------------------------------------

_MICROS = 10**MONEY_PLACES
_RATES_SQL = {
    "postgresql": f"""
SELECT prefix, (rate * {_MICROS})::bigint, (connect_fee * {_MICROS})::bigint,
       initial_increment, next_increment
FROM rating_rate WHERE deck_id = %s ORDER BY length(prefix), prefix COLLATE "C"
""",  # noqa: S608
    "sqlite": f"""
SELECT prefix, CAST(ROUND(rate * {_MICROS}) AS INTEGER),
       CAST(ROUND(connect_fee * {_MICROS}) AS INTEGER), initial_increment, next_increment
FROM rating_rate WHERE deck_id = %s ORDER BY length(prefix), prefix
""",  # noqa: S608
}


def deck_refs(carrier_ids: set[int] | None, using: str) -> dict[int, list[DeckRef]]:
    """The decks of these carriers (all when None), per carrier, by effective_from."""
    queryset = RateDeck.objects.using(using).order_by("carrier_id", "effective_from")
    if carrier_ids is not None:
        queryset = queryset.filter(carrier_id__in=carrier_ids)
    found: dict[int, list[DeckRef]] = {}
    for pk, carrier_id, effective, currency in queryset.values_list(
        "pk", "carrier_id", "effective_from", "currency"
    ):
        found.setdefault(carrier_id, []).append(DeckRef(pk, effective, currency))
    return found


def load_deck(deck: DeckRef, using: str) -> PackedDeck:
    """Read one deck's rates from the database, packed."""
    packed = PackedDeck(deck)
    connection = connections[using]
    sql = _RATES_SQL.get(connection.vendor, _RATES_SQL["sqlite"])
    with transaction.atomic(using=using), connection.chunked_cursor() as cursor:
        cursor.execute(sql, [deck.id])
        append = packed.append
        while rows := cursor.fetchmany(10_000):
            for row in rows:
                append(*row)
    return packed.finish()


def rate_from_database(
    carrier_id: int, digits: str, at: datetime, using: str = "default"
) -> RateMatch | None:
    """rate_for() with one indexed query: the deck in force, then its longest prefix."""
    candidates = [digits[:n] for n in range(min(len(digits), MAX_PREFIX), 0, -1)]
    if not candidates:
        return None
    deck = (
        RateDeck.objects.filter(carrier_id=carrier_id, effective_from__lte=at)
        .order_by("-effective_from")
        .values("pk")[:1]
    )
    row = (
        Rate.objects.using(using)
        .filter(deck_id=Subquery(deck), prefix__in=candidates)
        .annotate(digits=Length("prefix"))
        .order_by("-digits")
        .values_list(
            "prefix",
            "rate",
            "connect_fee",
            "initial_increment",
            "next_increment",
            "deck__currency",
            "deck_id",
        )
        .first()
    )
    return RateMatch(*row) if row else None


class RateStore:
    """Every carrier's decks, compiled in this process and kept current (see module doc)."""

    def __init__(
        self, using: str = "default", *, poll_interval: float = 0.2, background: bool = True
    ) -> None:
        self.using = using
        self.poll_interval = poll_interval
        self.background = background
        self.version: int | None = None  # None until the first load
        self._carriers: dict[int, CarrierDecks] = {}  # built carriers
        self._building: dict[int, int] = {}  # carrier -> generation of the wanted build
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._next_check = 0.0
        self._queue: queue.Queue[int] = queue.Queue()
        self._worker: threading.Thread | None = None

    # --- Answers ----------------------------------------------------------------------

    def rate_for(self, carrier_id: int, digits: str, at: datetime) -> RateMatch | None:
        """The rate of `digits` in the carrier's deck in force at `at` (aware), or None."""
        if at.tzinfo is None:
            raise ValueError("rate_for() needs an aware datetime")
        self._maybe_refresh()
        carrier = self._carriers.get(carrier_id)
        if carrier is None:
            if self.version is None or carrier_id in self._building:
                return rate_from_database(carrier_id, digits, at, self.using)
            return None  # loaded, and this carrier has no deck
        deck = carrier.in_force(at.timestamp())
        if deck is None:
            return None
        packed = carrier.packed.get(deck.id)
        if packed is None:  # a past deck: not kept in memory
            return rate_from_database(carrier_id, digits, at, self.using)
        return packed.find(digits)

    def deck_in_force(self, carrier_id: int, at: datetime) -> DeckRef | None:
        """The deck in force at `at`, from memory when the carrier is built."""
        self._maybe_refresh()
        carrier = self._carriers.get(carrier_id)
        if carrier is not None:
            return carrier.in_force(at.timestamp())
        deck = (
            RateDeck.objects.using(self.using)
            .filter(carrier_id=carrier_id, effective_from__lte=at)
            .order_by("-effective_from")
            .first()
        )
        return DeckRef(deck.pk, deck.effective_from, deck.currency) if deck else None

    # --- Freshness --------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether every carrier is answered from memory (no build pending)."""
        return self.version is not None and not self._building

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._maybe_refresh()
            if self.ready() or time.monotonic() > deadline:
                return self.ready()
            time.sleep(0.02)

    def packed_decks(self) -> int:
        return sum(len(carrier.packed) for carrier in self._carriers.values())

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_check or not self._refreshing.acquire(blocking=False):
            return
        try:
            self._next_check = now + self.poll_interval
            self.refresh()
        except DatabaseError:
            logger.exception("rate store refresh failed; serving version %s", self.version)
        finally:
            self._refreshing.release()

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
        carriers = {
            int(change.key)
            for change in changes.changes_between(known, version, self.using)
            if change.kind == changes.DECK and change.key.isdigit()
        }
        for carrier_id in carriers:
            self._schedule_build(carrier_id)
        self.version = version

    def _load_all(self, version: int) -> None:
        carriers = RateDeck.objects.using(self.using).values_list("carrier_id", flat=True)
        with self._lock:
            self._carriers = {}
            self.version = version
            for carrier_id in set(carriers):
                self._schedule_build(carrier_id)

    # --- Builds -----------------------------------------------------------------------

    def _schedule_build(self, carrier_id: int) -> None:
        """Rebuild a carrier's decks; the database answers for it meanwhile."""
        with self._lock:
            self._carriers.pop(carrier_id, None)
            already = carrier_id in self._building
            self._building[carrier_id] = self._building.get(carrier_id, 0) + 1
        if not self.background:
            self._build(carrier_id)
        elif not already:
            self._queue.put(carrier_id)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="rate-store-builder", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        try:
            while True:
                try:
                    carrier_id = self._queue.get(timeout=5)
                except queue.Empty:
                    return
                try:
                    self._build(carrier_id)
                except DatabaseError:
                    logger.exception("building the rate decks of carrier %s failed", carrier_id)
                    time.sleep(1)
                    self._queue.put(carrier_id)
        finally:
            connections[self.using].close()

    def _build(self, carrier_id: int) -> None:
        while True:
            with self._lock:
                generation = self._building.get(carrier_id)
            if generation is None:
                return
            started = time.monotonic()
            carrier = self.load_carrier(carrier_id)
            with self._lock:
                if self._building.get(carrier_id) != generation:
                    continue  # changed again while we read: read again
                del self._building[carrier_id]
                if carrier.decks:
                    self._carriers[carrier_id] = carrier
            logger.info(
                "rate decks of carrier %s compiled: %d packed, %d rates in %.1f s",
                carrier_id,
                len(carrier.packed),
                sum(len(deck) for deck in carrier.packed.values()),
                time.monotonic() - started,
            )
            return

    def load_carrier(self, carrier_id: int, now: datetime | None = None) -> CarrierDecks:
        """A carrier's decks from the database: all listed, current and future ones packed."""
        decks = deck_refs({carrier_id}, self.using).get(carrier_id, [])
        carrier = CarrierDecks(decks, [deck.effective_from.timestamp() for deck in decks])
        now_ts = (now or datetime.now().astimezone()).timestamp()
        current = bisect_right(carrier.times, now_ts) - 1
        for deck in decks[max(current, 0) :]:
            carrier.packed[deck.id] = load_deck(deck, self.using)
        return carrier


_instances: dict[tuple[int, str], RateStore] = {}
_instances_lock = threading.Lock()


def rate_store(using: str = "default") -> RateStore:
    """This process's rate store (one per process: a forked worker gets its own)."""
    key = (os.getpid(), using)
    store = _instances.get(key)
    if store is None:
        with _instances_lock:
            store = _instances.setdefault(key, RateStore(using))
    return store


def rate_for(
    carrier_id: int, digits: str, at: datetime, using: str = "default"
) -> RateMatch | None:
    """The rate of `digits` with `carrier_id` at `at`, from this process's rate store."""
    return rate_store(using).rate_for(carrier_id, digits, at)


def forget_rate_stores() -> None:
    """Drop this process's rate stores (tests switch databases between them)."""
    with _instances_lock:
        _instances.clear()
