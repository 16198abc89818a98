"""Per-trunk series at /metrics: the last 5 minutes of buckets, health, the label bound."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import OperationalError
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from routing.models import TrunkHealth
from tests.factories import make_bucket, make_trunk


def minutes_ago(n: int) -> dt.datetime:
    return timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=n)


def scrape(client) -> dict[str, dict[tuple[str, str, str], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[str, dict[tuple[str, str, str], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            if s.name.startswith("routing_trunk_"):
                key = (s.labels["tenant"], s.labels["carrier"], s.labels["trunk"])
                found.setdefault(s.name, {})[key] = s.value
    return found


@pytest.fixture
def recent(trunks_a, trunks_b, tenant_a, tenant_b):
    primary, backup = trunks_a
    make_bucket(tenant_a, primary, minutes_ago(1), codes={200: 3, 503: 1})
    make_bucket(tenant_a, primary, minutes_ago(4), codes={200: 1}, prefix="44")
    make_bucket(tenant_a, primary, minutes_ago(6), codes={200: 50})  # older than 5 minutes
    make_bucket(tenant_b, trunks_b[0], minutes_ago(2), codes={486: 2})
    TrunkHealth.objects.create(trunk=backup, state="unhealthy", since=minutes_ago(3))
    TrunkHealth.objects.create(
        trunk=trunks_b[1], state="unhealthy", since=minutes_ago(9), until=minutes_ago(1)
    )  # half-open


def test_it_exports_attempts_answers_asr_and_health_per_trunk(client, recent):
    series = scrape(client)

    a_primary = ("tenant-a", "Carrier A", "a-primary")
    b_primary = ("tenant-b", "Carrier B", "b-primary")
    assert series["routing_trunk_attempts_5m"][a_primary] == 5
    assert series["routing_trunk_answered_5m"][a_primary] == 4
    assert series["routing_trunk_asr_5m"][a_primary] == 0.8
    assert series["routing_trunk_asr_5m"][b_primary] == 0.0
    assert series["routing_trunk_attempts_5m"][("tenant-a", "Carrier A", "a-backup")] == 0
    assert ("tenant-a", "Carrier A", "a-backup") not in series["routing_trunk_asr_5m"]
    assert series["routing_trunk_healthy"] == {
        a_primary: 1,
        ("tenant-a", "Carrier A", "a-backup"): 0,
        b_primary: 1,
        ("tenant-b", "Carrier B", "b-backup"): 0,
    }


def test_the_labels_are_bounded_busiest_first_and_the_rest_is_other(
    client, settings, recent, tenant_a
):
    for n in range(6):
        make_bucket(tenant_a, make_trunk(tenant_a, f"small-{n}"), minutes_ago(2), codes={200: 1})
    settings.OUTCOMES_METRICS_MAX_TRUNKS = 3

    series = scrape(client)

    attempts = series["routing_trunk_attempts_5m"]
    assert list(attempts) == [
        ("tenant-a", "Carrier A", "a-primary"),  # 5 attempts
        ("tenant-b", "Carrier B", "b-primary"),  # 2
        ("tenant-a", "Carrier", "small-0"),  # 1, first by name
        ("other", "other", "other"),
    ]
    assert attempts[("other", "other", "other")] == 5  # small-1..5; the idle trunks add 0
    assert series["routing_trunk_answered_5m"][("other", "other", "other")] == 5
    assert ("other", "other", "other") not in series["routing_trunk_healthy"]
    for name in series:
        assert len(series[name]) <= 4


def test_among_idle_trunks_the_unhealthy_ones_keep_their_labels(client, settings, recent, tenant_a):
    make_trunk(tenant_a, "a-aaa", carrier="Carrier A")  # idle, healthy, first by name
    settings.OUTCOMES_METRICS_MAX_TRUNKS = 3

    series = scrape(client)

    assert series["routing_trunk_healthy"] == {
        ("tenant-a", "Carrier A", "a-primary"): 1,
        ("tenant-b", "Carrier B", "b-primary"): 1,
        ("tenant-a", "Carrier A", "a-backup"): 0,  # idle and unhealthy: before a-aaa
    }


def test_a_bound_of_zero_adds_everything_up(client, settings, recent):
    settings.OUTCOMES_METRICS_MAX_TRUNKS = 0

    series = scrape(client)

    assert series["routing_trunk_attempts_5m"] == {("other", "other", "other"): 7}


def test_a_failing_database_drops_these_series_and_keeps_the_others(client, recent, caplog):
    with mock.patch(
        "outcomes.metrics.trunk_series", side_effect=OperationalError("connection refused")
    ):
        response = client.get("/metrics")

    body = response.content.decode()
    assert response.status_code == 200
    assert "routing_decisions_total" in body
    assert "routing_trunk_" not in body
    assert "per-trunk series unavailable" in caplog.text


def test_the_queries_of_a_scrape_do_not_grow_with_trunks(
    client, recent, tenant_a, django_assert_max_num_queries
):
    for n in range(20):
        trunk = make_trunk(tenant_a, f"many-{n}", carrier=f"C{n % 5}")
        TrunkHealth.objects.create(trunk=trunk, state="unhealthy", since=minutes_ago(2))
        make_bucket(tenant_a, trunk, minutes_ago(2), codes={200: 1, 503: 1})

    with django_assert_max_num_queries(2):
        scrape(client)
