"""What a number costs at a time: a per-process compiled store of vendor and sell decks.

The answers, both from memory (no query), a few probes per digit of the number:

- `rate_for(carrier_id, digits, at)`: what a carrier (vendor) charges: the longest
  prefix of `digits` in the carrier's deck in force at `at` (the deck with the
  latest effective_from <= at);
- `sell_rate_for(plan_id=, customer_id=, digits=, at=)`: what a customer pays: the
  customer's deck in force at `at` if it has one, else its plan's (a customer's deck
  replaces the plan's whole: a prefix missing from it is not priced), longest prefix.

A future deck becomes current at its time with no action, because the deck is
picked by `at`.

For the resolver (least-cost routing), without importing rating (routing sits below
rating in the layers): `rate_source()` returns a `RateSource`, an object with

    vendor_rate(carrier_id, digits, at) -> RateMatch | None
    sell_rate(plan_id, customer_id, digits, at) -> RateMatch | None

(`at` an aware datetime; `customer_id` or `plan_id` may be None). Routing loads it
with `import_string(settings.ROUTING_RATE_SOURCE)()`, the setting defaulting to
"rating.lookup.rate_source". A RateMatch carries `prefix`, `rate` (Decimal, per
minute), `connect_fee` (Decimal), `initial_increment` and `next_increment`
(seconds), `currency` (ISO 4217) and `deck_id`. There is no currency conversion: a
vendor whose match is in another currency than the sell rate is **not comparable**
(`comparable(vendor, sell)` is False) and LCR skips it with a reason. Imports refuse
such a mix unless RATING_ALLOW_MIXED_CURRENCIES is set (rating.importing).

What each process keeps (`RateStore`): for every owner (a carrier, plan or
customer), the list of its decks (id, effective_from, currency: a few bytes each,
past ones included) and, packed, the deck in force when the owner was built and
every future deck. A past deck is not packed: asking for a time before the deck in
force (re-rating an old call) is answered from the database. A packed deck is
parallel arrays like the compiled route table (routing.compiled.packing):
int("1" + prefix) keys sorted in an array('q') behind two small hash filters, the
rate per minute in millionths in an array('q'), and the (connect fee, initial, next
increment) triple interned, about 26 bytes per prefix.

Kept current like routing.compiled.live: at most every `poll_interval` seconds
(0.2 s) one primary-key read of the route-table version (routing.changes); when it
moved, the change log names the owners whose decks changed (kind `deck`, written
by rating.importing and rating.services in their transaction) and those owners are
rebuilt in a background thread. While an owner is being built (and before the
first load), it is answered from the database with one indexed query, so an answer
is never staler than the poll interval.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import DatabaseError, connections, transaction
from django.db.models import Q, Subquery
from django.db.models.functions import Length

from rating.models import OWNER_FIELDS, Rate, RateDeck
from rating.rows import MAX_PREFIX, MONEY_PLACES
from rating.services import Owner, parse_owner_key
from routing import changes
from routing.process_local import ProcessLocal, threads_allowed

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


def comparable(vendor: RateMatch | None, sell: RateMatch | None) -> bool:
    """Whether a vendor's cost can be compared with a sell rate: both known, one currency."""
    return vendor is not None and sell is not None and vendor.currency == sell.currency


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
class OwnerDecks:
    """An owner's decks by effective time, and the packed ones (current and future)."""

    decks: list[DeckRef] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # effective_from timestamps, ascending
    packed: dict[int, PackedDeck] = field(default_factory=dict)

    def in_force(self, at: float) -> DeckRef | None:
        i = bisect_right(self.times, at) - 1
        return self.decks[i] if i >= 0 else None


CarrierDecks = OwnerDecks  # the name from before sell decks


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


def deck_refs(owners: set[Owner] | None, using: str) -> dict[Owner, list[DeckRef]]:
    """The decks of these owners (all when None), per owner, by effective_from."""
    queryset = RateDeck.objects.using(using).order_by("effective_from")
    if owners is not None:
        by_field: dict[str, list[int]] = {}
        for owner in owners:
            by_field.setdefault(owner.field, []).append(owner.id)
        wanted = Q(pk__in=[])
        for name, ids in by_field.items():
            wanted |= Q(**{f"{name}_id__in": ids})
        queryset = queryset.filter(wanted)
    found: dict[Owner, list[DeckRef]] = {}
    for pk, effective, currency, *ids in queryset.values_list(
        "pk", "effective_from", "currency", *(f"{name}_id" for name in OWNER_FIELDS)
    ):
        owner = _owner_of_ids(ids)
        found.setdefault(owner, []).append(DeckRef(pk, effective, currency))
    return found


def _owner_of_ids(ids: list[int | None]) -> Owner:
    """The Owner of a deck from its (carrier_id, plan_id, customer_id) values."""
    for name, pk in zip(OWNER_FIELDS, ids, strict=True):
        if pk is not None:
            return Owner(name, pk)
    raise ValueError("a rate deck without an owner")


def _as_owner(owner: Owner | tuple[str, int] | int) -> Owner:
    if isinstance(owner, int):
        return Owner("carrier", owner)
    return Owner(*owner)


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
    owner: Owner | int, digits: str, at: datetime, using: str = "default"
) -> RateMatch | None:
    """A lookup with one indexed query: the owner's deck in force (a carrier when
    `owner` is an int), then its longest prefix of `digits`."""
    owner = _as_owner(owner)
    candidates = [digits[:n] for n in range(min(len(digits), MAX_PREFIX), 0, -1)]
    if not candidates:
        return None
    deck = (
        RateDeck.objects.using(using)
        .filter(**owner.filter, effective_from__lte=at)
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


def sell_rate_from_database(
    plan_id: int | None, customer_id: int | None, digits: str, at: datetime, using: str = "default"
) -> RateMatch | None:
    """sell_rate_for() from the database: the customer's deck if in force, else the plan's."""
    if customer_id is not None:
        customer = Owner("customer", customer_id)
        if RateDeck.objects.using(using).filter(**customer.filter, effective_from__lte=at).exists():
            return rate_from_database(customer, digits, at, using)
    if plan_id is not None:
        return rate_from_database(Owner("plan", plan_id), digits, at, using)
    return None


class RateStore:
    """Every owner's decks, compiled in this process and kept current (see module doc).

    Owners are keyed by Owner tuples (("carrier", 7), ("plan", 2), ("customer", 9)).
    """

    def __init__(
        self, using: str = "default", *, poll_interval: float = 0.2, background: bool = True
    ) -> None:
        self.using = using
        self.poll_interval = poll_interval
        self.background = background
        self.version: int | None = None  # None until the first load
        self._owners: dict[tuple[str, int], OwnerDecks] = {}  # built owners
        self._building: dict[tuple[str, int], int] = {}  # owner -> generation of the build
        self._lock = threading.RLock()
        self._refreshing = threading.Lock()
        self._next_check = 0.0
        self._queue: queue.Queue[tuple[str, int]] = queue.Queue()
        self._worker: threading.Thread | None = None

    # --- Answers ----------------------------------------------------------------------

    def rate_for(self, carrier_id: int, digits: str, at: datetime) -> RateMatch | None:
        """What the carrier charges for `digits` in its deck in force at `at` (aware), or None."""
        if at.tzinfo is None:
            raise ValueError("rate_for() needs an aware datetime")
        self._maybe_refresh()
        return self._find(("carrier", carrier_id), digits, at)[1]

    def sell_rate_for(
        self, *, plan_id: int | None, customer_id: int | None, digits: str, at: datetime
    ) -> RateMatch | None:
        """What the customer pays for `digits` at `at`: its own deck in force if it has
        one (a prefix missing from it is not priced), else its plan's; or None."""
        if at.tzinfo is None:
            raise ValueError("sell_rate_for() needs an aware datetime")
        self._maybe_refresh()
        if customer_id is not None:
            has_deck, match = self._find(("customer", customer_id), digits, at)
            if has_deck:
                return match
        if plan_id is not None:
            return self._find(("plan", plan_id), digits, at)[1]
        return None

    def _find(self, owner: tuple[str, int], digits: str, at: datetime):
        """(whether the owner has a deck in force at `at`, the match in it) — the hot path."""
        built = self._owners.get(owner)
        if built is None:
            if self.version is None or owner in self._building:
                deck = self._deck_from_database(owner, at)
                if deck is None:
                    return False, None
                return True, rate_from_database(owner, digits, at, self.using)
            return False, None  # loaded, and this owner has no deck
        deck = built.in_force(at.timestamp())
        if deck is None:
            return False, None
        packed = built.packed.get(deck.id)
        if packed is None:  # a past deck: not kept in memory
            return True, rate_from_database(owner, digits, at, self.using)
        return True, packed.find(digits)

    def deck_in_force(self, owner: Owner | int, at: datetime) -> DeckRef | None:
        """The owner's (a carrier when an int) deck in force at `at`, from memory when built."""
        owner = _as_owner(owner)
        self._maybe_refresh()
        built = self._owners.get(owner)
        if built is not None:
            return built.in_force(at.timestamp())
        return self._deck_from_database(owner, at)

    def _deck_from_database(self, owner: tuple[str, int], at: datetime) -> DeckRef | None:
        deck = (
            RateDeck.objects.using(self.using)
            .filter(**Owner(*owner).filter, effective_from__lte=at)
            .order_by("-effective_from")
            .values_list("pk", "effective_from", "currency")
            .first()
        )
        return DeckRef(*deck) if deck else None

    # --- Freshness --------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether every owner is answered from memory (no build pending)."""
        return self.version is not None and not self._building

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._maybe_refresh()
            if self.ready() or time.monotonic() > deadline:
                return self.ready()
            time.sleep(0.02)

    def packed_decks(self) -> int:
        return sum(len(owner.packed) for owner in self._owners.values())

    def is_built(self, owner: Owner | int) -> bool:
        """Whether the owner (a carrier when an int) is answered from memory."""
        return _as_owner(owner) in self._owners

    def built_owners(self) -> dict[tuple[str, int], OwnerDecks]:
        return dict(self._owners)

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
        owners = {
            parse_owner_key(change.key)
            for change in changes.changes_between(known, version, self.using)
            if change.kind == changes.DECK
        }
        for owner in owners - {None}:
            self._schedule_build(owner)
        self.version = version

    def _load_all(self, version: int) -> None:
        ids = RateDeck.objects.using(self.using).values_list(
            *(f"{name}_id" for name in OWNER_FIELDS)
        )
        with self._lock:
            self._owners = {}
            self.version = version
            for owner in {_owner_of_ids(list(row)) for row in ids}:
                self._schedule_build(owner)

    # --- Builds -----------------------------------------------------------------------

    def _schedule_build(self, owner: Owner) -> None:
        """Rebuild an owner's decks; the database answers for it meanwhile."""
        with self._lock:
            self._owners.pop(owner, None)
            already = owner in self._building
            self._building[owner] = self._building.get(owner, 0) + 1
        if not self.background:
            self._build(owner)
        elif not already:
            self._queue.put(owner)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="rate-store-builder", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        try:
            while True:
                try:
                    owner = self._queue.get(timeout=5)
                except queue.Empty:
                    return
                try:
                    self._build(owner)
                except DatabaseError:
                    logger.exception("building the rate decks of %s %s failed", *owner)
                    time.sleep(1)
                    self._queue.put(owner)
        finally:
            connections[self.using].close()

    def _build(self, owner: Owner) -> None:
        while True:
            with self._lock:
                generation = self._building.get(owner)
            if generation is None:
                return
            started = time.monotonic()
            built = self.load_owner(owner)
            with self._lock:
                if self._building.get(owner) != generation:
                    continue  # changed again while we read: read again
                del self._building[owner]
                if built.decks:
                    self._owners[owner] = built
            logger.info(
                "rate decks of %s %s compiled: %d packed, %d rates in %.1f s",
                *owner,
                len(built.packed),
                sum(len(deck) for deck in built.packed.values()),
                time.monotonic() - started,
            )
            return

    def load_owner(self, owner: Owner, now: datetime | None = None) -> OwnerDecks:
        """An owner's decks from the database: all listed, current and future ones packed."""
        owner = _as_owner(owner)
        decks = deck_refs({owner}, self.using).get(owner, [])
        built = OwnerDecks(decks, [deck.effective_from.timestamp() for deck in decks])
        now_ts = (now or datetime.now().astimezone()).timestamp()
        current = bisect_right(built.times, now_ts) - 1
        for deck in decks[max(current, 0) :]:
            built.packed[deck.id] = load_deck(deck, self.using)
        return built

    def load_carrier(self, carrier_id: int, now: datetime | None = None) -> OwnerDecks:
        return self.load_owner(Owner("carrier", carrier_id), now)


_stores: ProcessLocal[RateStore] = ProcessLocal(
    lambda using: RateStore(using, background=threads_allowed())
)


def rate_store(using: str = "default") -> RateStore:
    """This process's rate store (one per process: a forked worker gets its own)."""
    return _stores.get(using)


def rate_for(
    carrier_id: int, digits: str, at: datetime, using: str = "default"
) -> RateMatch | None:
    """What `carrier_id` charges for `digits` at `at`, from this process's rate store."""
    return rate_store(using).rate_for(carrier_id, digits, at)


def sell_rate_for(
    *,
    plan_id: int | None,
    customer_id: int | None,
    digits: str,
    at: datetime,
    using: str = "default",
) -> RateMatch | None:
    """What the customer (else the plan) is sold `digits` at `at`, from the rate store."""
    return rate_store(using).sell_rate_for(
        plan_id=plan_id, customer_id=customer_id, digits=digits, at=at
    )


class RateSource:
    """The rates the resolver's least-cost routing needs, behind a setting (module doc).

    Holds no state of its own: each call goes to this process's rate store, so an
    object made before a fork answers from the child's own store.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def vendor_rate(self, carrier_id: int, digits: str, at: datetime) -> RateMatch | None:
        return rate_store(self.using).rate_for(carrier_id, digits, at)

    def sell_rate(
        self, plan_id: int | None, customer_id: int | None, digits: str, at: datetime
    ) -> RateMatch | None:
        return rate_store(self.using).sell_rate_for(
            plan_id=plan_id, customer_id=customer_id, digits=digits, at=at
        )

    def wait_ready(self, timeout: float) -> bool:
        """Load this process's store now (a server's warm-up, routing.service.warm_up)."""
        return rate_store(self.using).wait_ready(timeout)


def rate_source(using: str = "default") -> RateSource:
    """ROUTING_RATE_SOURCE with the compiled route table: this process's rate store."""
    return RateSource(using)


class DatabaseRateSource:
    """The rates read straight from the database (an indexed query or two per vendor):
    always current, what ROUTING_RATE_SOURCE is with the database route table."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def vendor_rate(self, carrier_id: int, digits: str, at: datetime) -> RateMatch | None:
        return rate_from_database(carrier_id, digits, at, self.using)

    def sell_rate(
        self, plan_id: int | None, customer_id: int | None, digits: str, at: datetime
    ) -> RateMatch | None:
        return sell_rate_from_database(plan_id, customer_id, digits, at, self.using)


def database_rate_source(using: str = "default") -> DatabaseRateSource:
    return DatabaseRateSource(using)


def forget_rate_stores() -> None:
    """Drop this process's rate stores (tests switch databases between them)."""
    _stores.forget()
