"""POST /api/v1/kamailio/events: outcome events over HTTP, fire and forget."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from outcomes import ingest
from outcomes.models import OutcomeBucket
from tests.api.conftest import make_token

pytestmark = pytest.mark.django_db

EVENTS_URL = "/api/v1/kamailio/events"


@pytest.fixture(autouse=True)
def aggregator(monkeypatch):
    fresh = ingest.Aggregator()
    monkeypatch.setattr(ingest, "_shared", fresh)
    return fresh


def event(n: int = 1, **fields) -> dict:
    body = {
        "event": "sip-outcome",
        "kind": "attempt",
        "decision_id": f"{n:032x}",
        "tenant": "tenant-a",
        "route": 0,
        "prefix": "33",
        "code": 200,
        "pdd_ms": 900,
        "at": time.time(),
    }
    body.update(fields)
    return body


@pytest.fixture
def post_events(post_call):
    def post(body, **extra):
        payload = body if isinstance(body, bytes) else json.dumps(body)
        return post_call(payload, url=EVENTS_URL, **extra)

    return post


def test_it_takes_one_event_and_counts_it(post_events, aggregator, trunks_a):
    response = post_events(event(trunk_id=trunks_a[0].pk))
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1, "refused": []}
    aggregator.flush()
    bucket = OutcomeBucket.objects.get()
    assert (bucket.trunk, bucket.attempts, bucket.answered) == (trunks_a[0], 1, 1)


def test_it_takes_an_array_and_says_what_it_refused(post_events, aggregator, trunks_a):
    body = [
        event(1, trunk_id=trunks_a[0].pk),
        event(2, kind="end", duration_s=12),
        event(3, code="abc"),
        {"event": "sip-routing"},
        event(1, trunk_id=trunks_a[0].pk),
    ]
    response = post_events(body)
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 2
    assert answer["refused"][0].startswith("malformed: code must be an integer")
    assert answer["refused"][1:] == ["not an outcome event", "duplicate"]
    aggregator.flush()
    assert sum(OutcomeBucket.objects.values_list("attempts", flat=True)) == 1


def test_a_duplicate_sent_again_later_is_not_counted_twice(post_events, aggregator, tenant_a):
    assert post_events(event(7)).status_code == 202
    aggregator.flush()
    assert post_events(event(7)).json() == {"accepted": 0, "refused": ["duplicate"]}
    aggregator.flush()
    assert OutcomeBucket.objects.get().attempts == 1


@pytest.mark.parametrize(
    "body",
    [b"{", b"", b"42", b'"x"', json.dumps(event(code=99)).encode(), b"[" * 50000],
)
def test_malformed_bodies_are_400_with_a_reason(post_events, aggregator, body):
    response = post_events(body)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert aggregator.refused["malformed"] >= 1


def test_an_event_of_another_tenants_trunk_is_refused_at_flush(
    post_events, aggregator, trunks_a, trunks_b
):
    assert post_events(event(trunk_id=trunks_b[0].pk)).status_code == 202
    aggregator.flush()
    assert OutcomeBucket.objects.count() == 0
    assert aggregator.refused == {"trunk of another tenant": 1}


def test_it_needs_the_kamailio_token(post_events, tenant_a):
    assert post_events(event(), HTTP_AUTHORIZATION="Token wrong").status_code == 401


def test_the_tokens_networks_apply(post_events, tenant_a):
    key, _ = make_token("lan-only", "10.0.0.0/8")
    response = post_events(event(), HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403


def test_it_leaves_the_outcome_tables_to_the_flusher(post_events, tenant_a):
    # The request path only counts in memory: no query on the outcome tables.
    with CaptureQueriesContext(connection) as queries:
        response = post_events(event(2))
    assert response.status_code == 202
    selects = [q["sql"] for q in queries.captured_queries if "outcome" in q["sql"].lower()]
    assert selects == []


def test_the_answer_carries_what_an_event_must_echo(post_call, post_events, aggregator, route_a):
    answer = post_call().json()["rtjson"]
    second = answer["routes"][1]
    attempt = {
        "event": "sip-outcome",
        "kind": "attempt",
        "decision_id": answer["decision_id"],
        "tenant": answer["tenant"],
        "prefix": answer["prefix"],
        "customer": answer["customer"],
        "route": 1,
        "trunk_id": second["trunk_id"],
        "trunk": second["trunk"],
        "carrier": second["carrier"],
        "code": "200",
        "pdd_ms": "1800",
    }
    end = dict(attempt, kind="end", duration_s="95.5", code=None)
    assert post_events([attempt, end]).json() == {"accepted": 2, "refused": []}
    aggregator.flush()
    bucket = OutcomeBucket.objects.get()
    assert (bucket.tenant, bucket.trunk.name, bucket.carrier_name) == (
        route_a.tenant,
        "a-backup",
        "Carrier A",
    )
    assert (bucket.prefix, bucket.customer) == ("33", "Default")
    assert (bucket.attempts, bucket.answered, bucket.ended, bucket.duration_s_sum) == (
        1,
        1,
        1,
        95.5,
    )
