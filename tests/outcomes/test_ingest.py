"""The aggregator and the buckets it writes (outcomes.ingest, outcomes.store)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from prometheus_client import REGISTRY

from outcomes.ingest import Aggregator
from outcomes.models import OutcomeBucket, OutcomeCount
from outcomes.records import Attempt, Attribution, CallEnd

NOW = 1_764_449_000.0  # 2025-11-29 20:43:20 UTC
MINUTE = dt.datetime(2025, 11, 29, 20, 43, tzinfo=dt.UTC)


def of(n: int = 1, *, tenant="tenant-a", trunk_id=None, route=0, at=NOW, **extra) -> Attribution:
    return Attribution(
        decision_id=f"{n:032x}", tenant=tenant, route=route, trunk_id=trunk_id, prefix="33",
        at=at, **extra,
    )  # fmt: skip


@pytest.fixture
def aggregator():
    return Aggregator(clock=lambda: NOW)


def counts(bucket: OutcomeBucket, kind: str) -> dict[int, int]:
    return dict(bucket.counts.filter(kind=kind).values_list("value", "count"))


def test_it_writes_one_bucket_per_minute_and_key(aggregator, trunks_a):
    trunk = trunks_a[0]
    assert (
        aggregator.add(Attempt(of(1, trunk_id=trunk.pk), 200, pdd_ms=800, answer_ms=4000)) is None
    )
    assert aggregator.add(Attempt(of(2, trunk_id=trunk.pk), 486, pdd_ms=1500)) is None
    assert aggregator.add(Attempt(of(3, trunk_id=trunk.pk), 503)) is None
    assert aggregator.add(CallEnd(of(1, trunk_id=trunk.pk), 62.5)) is None
    written = aggregator.flush()

    assert (written.buckets, written.events) == (1, 4)
    bucket = OutcomeBucket.objects.get()
    assert bucket.minute == MINUTE
    assert (bucket.trunk, bucket.trunk_name, bucket.carrier_name) == (
        trunk,
        "a-primary",
        "Carrier A",
    )
    assert (bucket.prefix, bucket.tenant.slug) == ("33", "tenant-a")
    assert (bucket.attempts, bucket.answered, bucket.failed_4xx, bucket.failed_5xx) == (3, 1, 1, 1)
    assert (bucket.ended, bucket.duration_s_sum) == (1, 62.5)
    assert (bucket.pdd_count, bucket.pdd_ms_sum) == (2, 2300)
    assert counts(bucket, "code") == {200: 1, 486: 1, 503: 1}
    assert counts(bucket, "pdd") == {1000: 1, 2000: 1}


def test_flushes_add_up_across_processes(trunks_a):
    first, second = Aggregator(clock=lambda: NOW), Aggregator(clock=lambda: NOW)
    first.add(Attempt(of(1, trunk_id=trunks_a[0].pk), 200, pdd_ms=50))
    first.flush()
    second.add(Attempt(of(2, trunk_id=trunks_a[0].pk), 200, pdd_ms=60))
    second.add(Attempt(of(3, trunk_id=trunks_a[0].pk), 404))
    second.flush()
    bucket = OutcomeBucket.objects.get()
    assert (bucket.attempts, bucket.answered, bucket.failed_4xx) == (3, 2, 1)
    assert counts(bucket, "code") == {200: 2, 404: 1}
    assert counts(bucket, "pdd") == {100: 2}


def test_a_duplicate_is_not_counted_twice(aggregator, trunks_a):
    event = Attempt(of(1, trunk_id=trunks_a[0].pk), 200)
    assert aggregator.add(event) is None
    aggregator.flush()
    assert aggregator.add(event) == "duplicate"
    aggregator.flush()
    assert OutcomeBucket.objects.get().attempts == 1
    assert aggregator.refused == {"duplicate": 1}


def test_another_route_of_the_same_decision_is_another_attempt(aggregator, trunks_a):
    aggregator.add(Attempt(of(1, trunk_id=trunks_a[0].pk, route=0), 503))
    aggregator.add(Attempt(of(1, trunk_id=trunks_a[1].pk, route=1), 200))
    aggregator.flush()
    assert sorted(OutcomeBucket.objects.values_list("trunk_name", "attempts")) == [
        ("a-backup", 1),
        ("a-primary", 1),
    ]


def test_the_dedupe_window_is_bounded():
    clock = [NOW]
    aggregator = Aggregator(clock=lambda: clock[0], window=60, max_keys=2, writer=lambda d: None)
    for n in range(3):
        aggregator.add(Attempt(of(n), 200))
    assert len(aggregator._seen) == 2
    clock[0] += 61
    aggregator.add(Attempt(of(9, at=NOW + 61), 200))
    assert len(aggregator._seen) == 1


def test_it_refuses_a_trunk_of_another_tenant(aggregator, trunks_a, trunks_b):
    aggregator.add(Attempt(of(1, trunk_id=trunks_b[0].pk), 200))
    aggregator.add(Attempt(of(2, tenant="nobody"), 200))
    written = aggregator.flush()
    assert written.events == 0
    assert OutcomeBucket.objects.count() == 0
    assert aggregator.refused == {"trunk of another tenant": 1, "unknown tenant": 1}


def test_an_unknown_trunk_keeps_the_names_it_was_sent_with(aggregator, tenant_a):
    aggregator.add(Attempt(of(1, trunk_id=999_999, trunk="gone", carrier="Old"), 200))
    aggregator.flush()
    bucket = OutcomeBucket.objects.get()
    assert (bucket.trunk, bucket.trunk_key, bucket.trunk_name) == (None, 999_999, "gone")


def test_a_deleted_trunk_leaves_its_buckets_with_its_name(aggregator, trunks_a):
    aggregator.add(Attempt(of(1, trunk_id=trunks_a[1].pk), 200))
    aggregator.flush()
    trunks_a[1].delete()
    bucket = OutcomeBucket.objects.get()
    assert (bucket.trunk, bucket.trunk_name) == (None, "a-backup")


def test_out_of_order_and_odd_times(aggregator, trunks_a):
    assert aggregator.add(CallEnd(of(1, trunk_id=trunks_a[0].pk), 30.0)) is None  # before
    assert aggregator.add(Attempt(of(1, trunk_id=trunks_a[0].pk), 200)) is None
    assert aggregator.add(Attempt(of(2), 486)) is None
    assert aggregator.add(CallEnd(of(2), 10.0)) == "end of a failed attempt"
    assert aggregator.add(Attempt(of(3, at=NOW + 3600), 200)) == "event from the future"
    assert (
        aggregator.add(Attempt(of(4, at=NOW - 31 * 86400), 200)) == "event older than the retention"
    )


def test_events_without_a_time_count_when_received(aggregator, tenant_a):
    aggregator.add(Attempt(of(1, at=None), 200))
    aggregator.flush()
    assert OutcomeBucket.objects.get().minute == MINUTE


def test_a_failed_write_keeps_the_events_for_the_next_flush(tenant_a):
    calls = []

    def failing(deltas):
        calls.append(deltas)
        raise RuntimeError("database down")

    aggregator = Aggregator(clock=lambda: NOW, writer=failing)
    aggregator.add(Attempt(of(1), 200))
    with pytest.raises(RuntimeError):
        aggregator.flush()
    aggregator.writer = __import__("outcomes.store", fromlist=["write"]).write
    aggregator.add(Attempt(of(2), 200))
    aggregator.flush()
    assert OutcomeBucket.objects.get().attempts == 2


def test_refusals_are_logged_at_most_once_a_second(caplog):
    clock = [NOW]
    aggregator = Aggregator(clock=lambda: clock[0])
    for _ in range(100):
        aggregator.refuse("malformed")
    clock[0] += 1.5
    aggregator.refuse("malformed")
    lines = [r for r in caplog.records if r.name == "routing.outcomes"]
    assert len(lines) == 2
    assert "100 malformed" in lines[1].getMessage()
    assert aggregator.refused == {"malformed": 101}


def test_pruning_deletes_what_is_older_than_the_retention(aggregator, tenant_a, settings):
    aggregator.add(Attempt(of(1, at=NOW - 40 * 86400), 200))  # the clock here is NOW
    aggregator.retention_days = 60
    aggregator.add(Attempt(of(2, at=NOW - 40 * 86400), 200))
    aggregator.add(Attempt(of(3), 200))
    aggregator.flush()
    assert OutcomeBucket.objects.count() == 2
    assert OutcomeCount.objects.count() == 2
    settings.OUTCOMES_RETENTION_DAYS = 30
    call_command("prune_outcomes", stdout=__import__("io").StringIO())
    # The command prunes against the real clock: both minutes of 2025 are over 30 days old.
    assert OutcomeBucket.objects.count() == 0
    assert OutcomeCount.objects.count() == 0


def test_many_keys_are_written_in_chunks_with_their_own_counts(aggregator, trunks_a):
    for n in range(1200):
        attribution = Attribution(
            decision_id=f"{n:032x}", tenant="tenant-a", route=0, trunk_id=trunks_a[n % 2].pk,
            prefix=str(n % 600), at=NOW - 60 * (n // 600),
        )  # fmt: skip
        aggregator.add(Attempt(attribution, 200 + (n % 600), pdd_ms=n))
    assert aggregator.flush().buckets == 1200
    assert OutcomeBucket.objects.count() == 1200
    for bucket in OutcomeBucket.objects.filter(prefix__in=["0", "599"]):
        assert counts(bucket, "code") == {200 + int(bucket.prefix): 1}


def test_results_are_counted_for_prometheus(aggregator, tenant_a, trunks_b):
    def sample(result: str) -> float:
        value = REGISTRY.get_sample_value("routing_outcome_events_total", {"result": result})
        return value or 0.0

    before = {
        result: sample(result) for result in ("accepted", "duplicate", "trunk of another tenant")
    }
    aggregator.add(Attempt(of(1), 200))
    aggregator.add(Attempt(of(1), 200))
    aggregator.add(Attempt(of(2, trunk_id=trunks_b[0].pk), 200))
    aggregator.flush()
    assert {result: sample(result) - before[result] for result in before} == {
        "accepted": 2,
        "duplicate": 1,
        "trunk of another tenant": 1,
    }
