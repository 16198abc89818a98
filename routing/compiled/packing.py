"""How the compiled table packs a tenant's routes into memory.

A tenant's routes live in parallel arrays sorted by an integer key (about 60 bytes
per route with its targets, instead of several hundred as Python objects). The
repeated parts of a route are shared: its packed columns (`rows.packed_route_columns`:
bounds, action, reject, flags...) as one interned "shape", its targets' trunks,
priorities and weights as one interned "profile"; only the route id, prefix,
description and target ids are per route. Changes since the build sit in a small
overlay dict that is consulted first.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from routing.rows import (
    PROFILE_NAMES,
    RouteRow,
    names,
    normaliser,
    packed_route_columns,
    parse_ids,
    parse_profile,
)

__all__ = ["PROFILE_NAMES", "Entry", "Pools", "PrefixTable", "entry_of"]

# Prefixes of at most this many digits are keyed by int("1" + prefix), which fits
# a signed 64-bit array item; longer ones (rare) live in a dict.
KEY_DIGITS = 18
_LONG_BASE = 5 * 10**18

# A route's values come in the order of rows.RouteRow, then its target ids and
# its target profile (loading.PREFIX_SQL).
_ROUTE_NAMES = names(RouteRow)
_ID, _PREFIX, _TEXT = (_ROUTE_NAMES.index(n) for n in ("id", "prefix", "description"))
_PACKED = packed_route_columns()
_PACKED_NAMES = tuple(spec.name for spec in _PACKED)
_PACKED_AT = tuple(_ROUTE_NAMES.index(name) for name in _PACKED_NAMES)
_IDS, _PROFILE = len(_ROUTE_NAMES), len(_ROUTE_NAMES) + 1

Profile = tuple[tuple[int, ...], ...]
Targets = tuple[tuple[int, tuple[int, ...]], ...]  # (target id, profile item) per target
Entry = tuple[RouteRow, Targets]
# A prefix has one route per (caller prefix or pattern, schedule): the overlay keeps all of a
# changed prefix's routes (an empty tuple: none left).
Entries = tuple[Entry, ...]


def _odd_at_least(value: int) -> int:
    return max(value, 1021) | 1


def _key(prefix: str) -> int:
    return int("1" + prefix)


# How each packed value is normalised (SQLite gives booleans as 0/1, decimals as
# floats, NULL texts as None): as the database route table's rows are.
_FIXES = tuple((i, normaliser(spec)) for i, spec in zip(_PACKED_AT, _PACKED, strict=True))


def _shape(values) -> tuple:
    return tuple(fix(values[i]) for i, fix in _FIXES)


def _route(route_id: int, prefix: str, description: str, shape: tuple) -> RouteRow:
    return RouteRow(
        id=route_id,
        prefix=prefix,
        description=description,
        **dict(zip(_PACKED_NAMES, shape, strict=True)),
    )


def entry_of(values) -> Entry:
    """One loaded row (route values, target ids, profile) as an overlay entry."""
    row = _route(values[_ID], values[_PREFIX], values[_TEXT] or "", _shape(values))
    targets = tuple(zip(parse_ids(values[_IDS]), parse_profile(values[_PROFILE]), strict=True))
    return row, targets


class Pools:
    """What the routes of every plan in a process share: shapes, descriptions and target
    profiles, each kept once (a wholesale operator's 200 plans repeat the same few
    hundred target sets and descriptions), and the (trunk, priority, weight) items.

    Only ever grows; one builder thread adds to it (CompiledRouteTable builds plans one
    at a time), and readers only index into the lists.
    """

    def __init__(self) -> None:
        self.shapes: list[tuple] = []
        self.texts: list[str] = []
        self.profiles: list[Profile] = []
        self.index: dict = {}
        self.items: dict[tuple[int, ...], tuple[int, ...]] = {}

    def intern(self, pool: list, value) -> int:
        key = (id(pool), value)
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(pool)
            pool.append(value)
        return found

    def profile(self, text: str | None) -> int:
        """The index of a target profile, keyed by its parsed items (kept anyway), not by
        its database text: a million routes' texts would outlive the load otherwise."""
        items = self.items
        profile = tuple(items.setdefault(item, item) for item in parse_profile(text))
        return self.intern(self.profiles, profile)


# Rows of one plan's table kept decoded (see PrefixTable._decoded).
DECODED_ROWS = 16384


class PrefixTable:
    """One plan's routes, packed into arrays, plus an overlay of later changes."""

    def __init__(self, pools: Pools | None = None) -> None:
        self.keys = array("q")  # sorted int("1" + prefix)
        self.long: dict[str, list[int]] = {}  # prefixes longer than KEY_DIGITS -> indexes
        self.ids = array("q")
        self.shape = array("I")  # index into self.shapes
        self.text = array("I")  # index into self.texts (descriptions)
        self.target_start = array("I")  # index into self.target_ids
        self.profile = array("I")  # index into self.profiles
        self.target_ids = array("q")
        self.pools = pools if pools is not None else Pools()
        self.shapes = self.pools.shapes
        self.texts = self.pools.texts
        self.profiles = self.pools.profiles
        # The version of the plan's routes the table holds (None: as saved) and the
        # overlay, in one tuple that note() replaces whole: a reader that takes it
        # once sees one version's routes, never a half-applied publish.
        self.state: tuple[int | None, dict[str, Entries]] = (None, {})
        self.longest = 0  # digits of the longest prefix: longer candidates cannot match
        self.decoded: dict[int, Entry] = {}  # see _decoded()
        self.size1 = self.size2 = 1
        self.filter1 = self.filter2 = bytearray(1)  # see _build_filter()
        self._profiles: dict[str | None, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def version(self) -> int | None:
        return self.state[0]

    @property
    def overlay(self) -> dict[str, Entries]:
        return self.state[1]

    def append(self, values) -> None:
        """Add one loaded row; rows come in key order (checked in finish()). A prefix
        with several routes (caller prefixes, schedules) has one row each, adjacent."""
        prefix = values[_PREFIX]
        index = len(self.ids)
        self.longest = max(self.longest, len(prefix))
        if len(prefix) <= KEY_DIGITS:
            self.keys.append(_key(prefix))
        else:
            # A placeholder above every real key (those are < 2 * 10**18), in SQL order.
            self.long.setdefault(prefix, []).append(index)
            self.keys.append(_LONG_BASE + index)
        self.ids.append(values[_ID])
        self.shape.append(self.pools.intern(self.shapes, _shape(values)))
        self.text.append(self.pools.intern(self.texts, values[_TEXT] or ""))
        self.target_start.append(len(self.target_ids))
        text = values[_PROFILE]
        index = self._profiles.get(text)  # this build's texts: parsed once, then dropped
        if index is None:
            index = self._profiles[text] = self.pools.profile(text)
        self.profile.append(index)
        self.target_ids.extend(parse_ids(values[_IDS]))

    def finish(self) -> PrefixTable:
        keys = self.keys
        if any(keys[i] > keys[i + 1] for i in range(len(keys) - 1)):
            self._sort()
        self._profiles = {}
        self._build_filter()
        return self

    def _sort(self) -> None:
        """Reorder the arrays by key (a database whose collation did not sort digits)."""
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)  # stable
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
        self.long = {p: sorted(position[i] for i in found) for p, found in self.long.items()}

    def _indexes(self, prefix: str) -> list[int]:
        if len(prefix) > KEY_DIGITS:
            return self.long.get(prefix, [])
        key = _key(prefix)
        keys = self.keys
        i = bisect_left(keys, key)
        found = []
        while i < len(keys) and keys[i] == key:
            found.append(i)
            i += 1
        return found

    def find_all(
        self, candidates: list[str], overlay: dict[str, Entries] | None = None
    ) -> list[Entry]:
        """The entries of those `candidates` that are in the table (the hot path), with
        the overlay of the state the caller read (default: the current one)."""
        if overlay is None:
            overlay = self.state[1]
        keys, longest = self.keys, self.longest
        filter1, filter2, size1, size2 = self.filter1, self.filter2, self.size1, self.size2
        size = len(keys)
        found = []
        for prefix in candidates:
            if len(prefix) > longest:
                continue
            if overlay and prefix in overlay:
                found.extend(overlay[prefix])
                continue
            if len(prefix) > KEY_DIGITS:
                for i in self.long.get(prefix, ()):
                    found.append(self._decoded(i, prefix))
                continue
            key = int("1" + prefix)
            if not (filter1[key % size1] and filter2[key % size2]):
                continue  # surely absent: most candidates end here, without a bisect
            i = bisect_left(keys, key)
            while i < size and keys[i] == key:
                found.append(self._decoded(i, prefix))
                i += 1
        return found

    def _decoded(self, i: int, prefix: str) -> Entry:
        """Row i as objects, remembered: traffic goes to few destinations, and decoding
        a row was a fifth of a decision. The packed rows never change (a rebuilt table
        is a new PrefixTable), so a remembered row is never stale; at DECODED_ROWS the
        memory is emptied (a few MB per process at most)."""
        entry = self.decoded.get(i)
        if entry is None:
            entry = self._entry(i, prefix)
            if len(self.decoded) >= DECODED_ROWS:
                self.decoded.clear()
            self.decoded[i] = entry
        return entry

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

    def note(self, changed: dict[str, Entries], version: int | None) -> None:
        """Put reloaded prefixes' routes (an empty tuple: all deleted) in the overlay, as
        of `version`; the new state replaces the old in one assignment."""
        self.longest = max([self.longest, *(len(k) for k, v in changed.items() if v)])
        self.state = (version, {**self.state[1], **changed})

    def lookup(self, prefix: str) -> Entries:
        """Every route of `prefix` (one per caller prefix and schedule)."""
        if prefix in self.overlay:
            return self.overlay[prefix]
        return tuple(self._entry(i, prefix) for i in self._indexes(prefix))

    def _entry(self, i: int, prefix: str) -> Entry:
        row = _route(self.ids[i], prefix, self.texts[self.text[i]], self.shapes[self.shape[i]])
        start = self.target_start[i]
        ids = self.target_ids
        targets = tuple(
            (ids[start + n], item) for n, item in enumerate(self.profiles[self.profile[i]])
        )
        return row, targets
