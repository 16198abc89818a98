"""The compiled rate store: the deck in force by time, longest prefix, kept current by polling."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from rating import services
from rating.lookup import RateMatch, RateStore, rate_from_database
from tests.rating.conftest import HEADER, T0, T1, make_deck

BODY = HEADER + "33,France,0.012,0,60,60\n336,France mobile,0.0451,0.01,30,6\n"


@pytest.fixture
def store(db) -> RateStore:
    return RateStore(poll_interval=0, background=False)


def test_it_answers_the_longest_prefix_of_the_deck_in_force(carrier_a, store):
    deck = make_deck(carrier_a, BODY).deck
    match = store.rate_for(carrier_a.pk, "33612345678", T0)
    assert match == RateMatch("336", Decimal("0.0451"), Decimal("0.01"), 30, 6, "EUR", deck.pk)
    assert store.rate_for(carrier_a.pk, "33123", T0).prefix == "33"
    assert store.rate_for(carrier_a.pk, "44123", T0) is None
    assert store.rate_for(carrier_a.pk, "33123", T0 - timedelta(seconds=1)) is None
    assert store.packed_decks() == 1


def test_a_deck_imported_in_this_process_is_used_after_the_next_poll(carrier_a, trunks_b, db):
    store = RateStore(poll_interval=3600, background=False)
    now = timezone.now()
    make_deck(carrier_a, BODY, at=now - timedelta(days=1))
    assert store.rate_for(carrier_a.pk, "33123", now).rate == Decimal("0.012")
    assert store.ready()
    newer = make_deck(carrier_a, HEADER + "33,France,0.02,0,1,1\n", at=now - timedelta(hours=1))
    # Not polled yet: the old deck still answers from memory.
    assert store.rate_for(carrier_a.pk, "33123", now).deck_id != newer.deck.pk
    store.refresh()
    match = store.rate_for(carrier_a.pk, "33123", now)
    assert (match.deck_id, match.rate) == (newer.deck.pk, Decimal("0.02"))


def test_a_future_deck_takes_over_exactly_at_its_time(carrier_a, store):
    current = make_deck(carrier_a, BODY, at=T0).deck
    future = make_deck(carrier_a, HEADER + "33,France,0.011,0,60,60\n", at=T1).deck
    before = T1 - timedelta(microseconds=1)
    assert store.rate_for(carrier_a.pk, "33612", before).deck_id == current.pk
    at = store.rate_for(carrier_a.pk, "33612", T1)
    assert (at.deck_id, at.prefix, at.rate) == (future.pk, "33", Decimal("0.011"))
    # A past deck is not packed: asked for, it is read from the database.
    assert store.rate_for(carrier_a.pk, "336", T0).deck_id == current.pk


def test_a_deleted_deck_is_dropped_after_the_next_poll(carrier_a, store):
    old = make_deck(carrier_a, BODY, at=T0).deck
    new = make_deck(carrier_a, BODY, at=T1).deck
    assert store.rate_for(carrier_a.pk, "33", T1).deck_id == new.pk
    services.delete_deck(user=None, deck=new)
    store.refresh()
    assert store.rate_for(carrier_a.pk, "33", T1).deck_id == old.pk
    services.delete_deck(user=None, deck=old)
    store.refresh()
    assert store.rate_for(carrier_a.pk, "33", T1) is None


def test_while_a_carrier_is_built_the_database_answers(carrier_a, db):
    store = RateStore(poll_interval=0, background=True)
    deck = make_deck(carrier_a, BODY, at=T0).deck
    store._worker = None
    store.background = True
    # Hold the build: the carrier is pending, so the answer comes from the database.
    store._schedule_build = lambda carrier_id: store._building.__setitem__(carrier_id, 1)
    store.refresh()
    assert ("carrier", carrier_a.pk) in store._building
    assert store.rate_for(carrier_a.pk, "3361", T1).deck_id == deck.pk


def test_compiled_and_database_lookups_agree(carrier_a, store):
    rng = random.Random(7)
    prefixes = {
        str(rng.randint(1, 999)) + str(rng.randint(0, 10 ** rng.randint(0, 8))) for _ in range(1500)
    }
    prefixes |= {"1" * 20, "1" * 25, "12345678901234567890123"}
    lines = [
        f"{p},d,{rng.randint(0, 10**9) / 10**6},{rng.choice(['0', '0.01', '0.5'])},"
        f"{rng.choice([1, 30, 60])},{rng.choice([1, 6, 60])}"
        for p in sorted(prefixes)
    ]
    # One deck in force and one in the future: both are packed.
    current, future = timezone.now() - timedelta(days=1), timezone.now() + timedelta(days=30)
    make_deck(carrier_a, HEADER + "\n".join(lines) + "\n", at=current)
    make_deck(carrier_a, HEADER + "\n".join(lines[::3]) + "\n", at=future)
    numbers = [
        *(p + str(rng.randint(0, 10**6)) for p in rng.sample(sorted(prefixes), 400)),
        *(str(rng.randint(1, 10**12)) for _ in range(200)),
        "1" * 30,
    ]
    store.refresh()
    assert store.packed_decks() == 2
    for at in (current, future):
        for number in numbers:
            assert store.rate_for(carrier_a.pk, number, at) == rate_from_database(
                carrier_a.pk, number, at
            ), number


def test_another_carrier_never_answers(carrier_a, carrier_b, store):
    make_deck(carrier_a, BODY, at=T0)
    assert store.rate_for(carrier_b.pk, "33", T1) is None
    with pytest.raises(ValueError, match="aware"):
        store.rate_for(carrier_a.pk, "33", T1.replace(tzinfo=None))
