"""Quality figures from the buckets (outcomes.figures)."""

from __future__ import annotations

import datetime as dt

import pytest

from outcomes.figures import Quality, quality
from outcomes.ingest import Aggregator
from outcomes.records import Attempt, Attribution, CallEnd

NOW = 1_764_449_000.0
SINCE = dt.datetime(2025, 11, 29, 20, 0, tzinfo=dt.UTC)
UNTIL = dt.datetime(2025, 11, 29, 21, 0, tzinfo=dt.UTC)


def of(n, trunk, *, prefix="33", customer="Shop", minutes_ago=0, tenant="tenant-a"):
    return Attribution(
        decision_id=f"{n:032x}", tenant=tenant, route=0, trunk_id=trunk.pk, prefix=prefix,
        customer=customer, at=NOW - 60 * minutes_ago,
    )  # fmt: skip


@pytest.fixture
def recorded(trunks_a, trunks_b):
    primary, backup = trunks_a
    aggregator = Aggregator(clock=lambda: NOW)
    events = [
        Attempt(of(1, primary), 200, pdd_ms=400),
        Attempt(of(2, primary, minutes_ago=3), 200, pdd_ms=900),
        Attempt(of(3, primary, prefix="44"), 486, pdd_ms=1500),
        Attempt(of(4, primary, customer="Other"), 503, pdd_ms=30000),
        CallEnd(of(1, primary), 60.0),
        CallEnd(of(2, primary, minutes_ago=3), 120.0),
        Attempt(of(5, backup), 404),
        Attempt(of(6, trunks_b[0], tenant="tenant-b"), 200),  # the outsider's
    ]
    for event in events:
        assert aggregator.add(event) is None
    aggregator.flush()


def by_key(figures: list[Quality]) -> dict[tuple, Quality]:
    return {figure.key: figure for figure in figures}


def test_figures_per_trunk(recorded, tenant_a, trunks_a):
    figures = by_key(quality(tenant=tenant_a, since=SINCE, until=UNTIL, by="trunk"))
    primary = figures[(trunks_a[0].pk, "a-primary", "Carrier A")]
    assert (primary.attempts, primary.answered, primary.ended) == (4, 2, 2)
    assert primary.asr == 0.5
    assert primary.acd_s == 90.0
    assert primary.ner == 0.75  # 2 answered + 1 busy out of 4
    assert primary.codes == {200: 2, 486: 1, 503: 1}
    assert (primary.pdd_p50_ms, primary.pdd_p95_ms) == (1000, None)  # p95 above 20 s
    backup = figures[(trunks_a[1].pk, "a-backup", "Carrier A")]
    assert (backup.attempts, backup.asr, backup.acd_s, backup.pdd_p50_ms) == (1, 0.0, None, None)


def test_figures_per_prefix_customer_carrier_and_tenant(recorded, tenant_a):
    prefixes = quality(tenant=tenant_a, since=SINCE, until=UNTIL, by="prefix")
    assert {f.key: f.attempts for f in prefixes} == {("33",): 4, ("44",): 1}
    customers = quality(tenant=tenant_a, since=SINCE, until=UNTIL, by="customer")
    assert {f.key: f.attempts for f in customers} == {("Shop",): 4, ("Other",): 1}
    carriers = quality(tenant=tenant_a, since=SINCE, until=UNTIL, by="carrier")
    assert [(f.key, f.attempts) for f in carriers] == [(("Carrier A",), 5)]
    (whole,) = quality(tenant=tenant_a, since=SINCE, until=UNTIL, by="tenant")
    assert (whole.attempts, whole.answered) == (5, 2)


def test_the_range_and_the_tenant_bound_the_figures(recorded, tenant_a, tenant_b):
    recent = SINCE.replace(minute=42)
    (whole,) = quality(tenant=tenant_a, since=recent, until=UNTIL, by="tenant")
    assert whole.attempts == 4  # the attempt of 3 minutes ago is out
    (outsider,) = quality(tenant=tenant_b, since=SINCE, until=UNTIL, by="tenant")
    assert (outsider.attempts, outsider.codes) == (1, {200: 1})
