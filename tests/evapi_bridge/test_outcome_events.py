"""Outcome events over EVAPI: counted by the loop, never answered, never in the way."""

from __future__ import annotations

import time

import pytest

from outcomes import ingest
from outcomes.models import OutcomeBucket
from tests.evapi_bridge.fake_kamailio import FakeKamailio, frame
from tests.evapi_bridge.test_bridge import by_tindex, event, running_bridge

pytestmark = pytest.mark.django_db(transaction=True)


def outcome(n: int, **fields) -> dict:
    body = {
        "event": "sip-outcome",
        "kind": "attempt",
        "decision_id": f"{n:032x}",
        "tenant": "tenant-a",
        "route": 0,
        "prefix": "33",
        "code": 200 if n % 2 else 503,
        "pdd_ms": 700,
        "at": time.time(),
    }
    body.update(fields)
    return body


def test_routing_events_are_all_answered_among_outcome_events(route_a, monkeypatch):
    aggregator = ingest.Aggregator()
    monkeypatch.setattr(ingest, "_shared", aggregator)
    kamailio = FakeKamailio()
    try:
        with running_bridge(kamailio, max_wait=60, deadline=60) as bridge:
            client = kamailio.accept()
            stream = []
            for n in range(200):
                stream.append(frame(outcome(n)))
                stream.append(frame(event(n)))
            stream.append(frame(outcome(0)))  # a duplicate
            stream.append(frame(b'{"event":"sip-outcome","kind":"attempt"}'))  # malformed
            client.send(b"".join(stream))
            answers = by_tindex(client.answers(200))
            assert sorted(answers) == list(range(200))
            assert all(answer["success"] for answer in answers.values())
            assert client.nothing_within(0.3)  # no answer to any outcome event
            assert bridge.in_flight == 0
        # Stopping the bridge flushed the aggregator.
        bucket = OutcomeBucket.objects.get()
        assert (bucket.attempts, bucket.answered, bucket.failed_5xx) == (200, 100, 100)
        assert aggregator.refused == {"duplicate": 1, "malformed": 1}
    finally:
        kamailio.stop()
