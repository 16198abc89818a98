"""The live traffic selectors: the timeline, trunks with sparklines and health, failing prefixes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outcomes.figures import (
    Health,
    failing_prefixes,
    health_state,
    slot_starts,
    timeline,
    trunk_traffic,
)
from routing.models import TrunkHealth
from tests.factories import make_bucket, make_trunk

SINCE = dt.datetime(2025, 11, 29, 20, 0, tzinfo=dt.UTC)
UNTIL = dt.datetime(2025, 11, 29, 21, 0, tzinfo=dt.UTC)
NOW = UNTIL


def at(minutes: int) -> dt.datetime:
    return SINCE + dt.timedelta(minutes=minutes)


@pytest.fixture
def traffic(tenant_a, trunks_a, tenant_b, trunks_b):
    primary, backup = trunks_a
    make_bucket(tenant_a, primary, at(0), codes={200: 3, 503: 1}, durations=(60.0, 30.0))
    make_bucket(tenant_a, primary, at(0), codes={404: 2}, prefix="44", customer="Other")
    make_bucket(tenant_a, primary, at(12), codes={200: 1}, durations=(90.0,))
    make_bucket(tenant_a, backup, at(12), codes={486: 1, 603: 1}, prefix="44")
    make_bucket(tenant_a, backup, at(59), codes={503: 4}, prefix="49")
    make_bucket(tenant_a, primary, at(60), codes={200: 9})  # the next hour: outside
    make_bucket(tenant_a, primary, at(-1), codes={200: 9})  # before: outside
    make_bucket(tenant_b, trunks_b[0], at(0), codes={500: 7}, prefix="44")  # the outsider's


def test_the_timeline_has_every_minute_and_gaps_where_nothing_happened(traffic, tenant_a):
    minutes = timeline(tenant=tenant_a, since=SINCE, until=UNTIL)

    assert len(minutes) == 60
    assert [m.at for m in minutes[:2]] == [at(0), at(1)]
    first = minutes[0]
    assert (first.attempts, first.answered, first.asr, first.acd_s) == (6, 3, 0.5, 45.0)
    assert (minutes[12].attempts, minutes[12].answered, minutes[12].acd_s) == (3, 1, 90.0)
    assert (minutes[59].attempts, minutes[59].asr, minutes[59].acd_s) == (4, 0.0, None)
    quiet = minutes[1]
    assert (quiet.attempts, quiet.answered, quiet.asr, quiet.acd_s) == (0, 0, None, None)
    assert sum(m.attempts for m in minutes) == 13  # not the outsider's, not outside


def test_trunks_are_busiest_first_with_their_figures_and_attempts_per_slot(
    traffic, tenant_a, trunks_a
):
    primary, backup = trunks_a
    idle = make_trunk(tenant_a, "a-idle", carrier="Carrier Z")

    rows = trunk_traffic(tenant=tenant_a, since=SINCE, until=UNTIL, now=NOW, slot_minutes=10)

    assert [r.trunk_name for r in rows] == ["a-primary", "a-backup", "a-idle"]
    first = rows[0]
    assert (first.trunk, first.carrier_name) == (primary, "Carrier A")
    assert (first.figures.attempts, first.figures.answered) == (7, 4)
    assert first.slots == [6, 1, 0, 0, 0, 0]
    assert rows[1].trunk == backup
    assert rows[1].slots == [0, 2, 0, 0, 0, 4]
    assert rows[1].figures.ner == pytest.approx(2 / 6)  # 486 and 603 are the callee's
    assert (rows[2].trunk, rows[2].figures.attempts, rows[2].slots) == (idle, 0, [0] * 6)


def test_a_deleted_trunk_keeps_its_names_and_has_no_health(traffic, tenant_a, trunks_a):
    trunks_a[1].delete()

    rows = trunk_traffic(tenant=tenant_a, since=SINCE, until=UNTIL, now=NOW, slot_minutes=10)

    gone = next(r for r in rows if r.trunk_name == "a-backup")
    assert (gone.trunk, gone.carrier_name, gone.figures.attempts) == (None, "Carrier A", 6)
    assert gone.health == Health.HEALTHY


def test_slots_are_aligned_and_cover_the_range():
    starts = slot_starts(at(3), at(63), 10)

    assert starts[0] == at(0)
    assert starts[-1] == at(60)
    assert len(starts) == 7


def test_the_health_of_each_trunk_is_read_from_its_row(traffic, tenant_a, trunks_a):
    backup = trunks_a[1]
    TrunkHealth.objects.create(
        trunk=backup, state="unhealthy", since=at(50), until=at(70), reason="ASR 0% on 4"
    )

    rows = trunk_traffic(tenant=tenant_a, since=SINCE, until=UNTIL, now=NOW, slot_minutes=10)

    health = {r.trunk_name: (r.health, r.health_reason) for r in rows}
    assert health == {"a-primary": ("healthy", ""), "a-backup": ("unhealthy", "ASR 0% on 4")}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"state": "healthy"}, Health.HEALTHY),
        ({"state": "unhealthy", "until": at(70)}, Health.UNHEALTHY),
        ({"state": "unhealthy", "until": None}, Health.UNHEALTHY),
        ({"state": "unhealthy", "until": at(59)}, Health.HALF_OPEN),
        ({"state": "unhealthy", "override": "up"}, Health.FORCED_UP),
        ({"state": "healthy", "override": "down"}, Health.FORCED_DOWN),
    ],
)
def test_health_states(fields, expected):
    assert health_state(TrunkHealth(since=SINCE, **fields), now=NOW) == expected
    assert health_state(None, now=NOW) == Health.HEALTHY


def test_the_prefixes_with_most_failures_come_first_and_at_most_the_limit(traffic, tenant_a):
    found = failing_prefixes(tenant=tenant_a, since=SINCE, until=UNTIL)

    assert [(p.prefix, p.attempts, p.failures, p.asr) for p in found] == [
        ("44", 4, 4, 0.0),
        ("49", 4, 4, 0.0),
        ("33", 5, 1, 0.8),
    ]
    assert [p.prefix for p in failing_prefixes(tenant=tenant_a, since=SINCE, until=UNTIL, limit=1)]
    assert len(failing_prefixes(tenant=tenant_a, since=SINCE, until=UNTIL, limit=2)) == 2


def test_the_queries_do_not_grow_with_buckets_or_trunks(tenant_a, trunks_a):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            timeline(tenant=tenant_a, since=SINCE, until=UNTIL)
            trunk_traffic(tenant=tenant_a, since=SINCE, until=UNTIL, now=NOW, slot_minutes=10)
            failing_prefixes(tenant=tenant_a, since=SINCE, until=UNTIL)
        return len(queries)

    make_bucket(tenant_a, trunks_a[0], at(1), codes={200: 1})
    few = count()
    for n in range(12):
        trunk = make_trunk(tenant_a, f"extra-{n}", carrier=f"Carrier {n % 3}")
        TrunkHealth.objects.create(trunk=trunk, state="unhealthy", since=SINCE)
        for minute in range(0, 60, 7):
            make_bucket(tenant_a, trunk, at(minute), codes={200: 1, 503: n}, prefix=f"4{n}")

    assert count() == few == 6
