"""Outcome events over EVAPI: counted by the loop, never answered, never in the way."""

from __future__ import annotations

import json
import time

import pytest

from evapi_bridge.bridge import Bridge, BridgeConfig
from kamailio.events import is_outcome
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


@pytest.mark.parametrize(
    ("payload", "taken", "counted", "refused"),
    [
        (json.dumps(outcome(1)).encode(), True, 1, {}),
        (b'{"event":"sip-outcome","kind":"attempt"}', True, 0, {"malformed": 1}),
        (b'{"event":"sip-outcome"', True, 0, {"malformed": 1}),
        # Routing events are left to the workers, whatever they mention:
        (json.dumps(event(1, call_id="sip-outcome")).encode(), False, 0, {}),
        (b'{"event":"sip-routing","tindex":1,"tlabel":2,"x":"sip-outcome"', False, 0, {}),
    ],
)
def test_the_loop_takes_outcome_events_only(monkeypatch, payload, taken, counted, refused):
    aggregator = ingest.Aggregator()
    monkeypatch.setattr(ingest, "_shared", aggregator)
    bridge = Bridge(BridgeConfig(addresses=()))
    assert is_outcome(payload)
    assert bridge.take_outcome(payload) is taken
    assert (aggregator.accepted, dict(aggregator.refused)) == (counted, refused)
