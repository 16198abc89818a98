"""Outcome events on the wire, bytes alone: kamailio.events."""

from __future__ import annotations

import json

import pytest

from kamailio.events import Malformed, NotOutcome, is_outcome, parse_batch, parse_event
from outcomes.records import Attempt, CallEnd, pdd_bucket

DID = "0123456789abcdef0123456789abcdef"


def attempt(**fields) -> bytes:
    event = {
        "event": "sip-outcome",
        "kind": "attempt",
        "decision_id": DID,
        "tenant": "tenant-a",
        "route": 0,
        "trunk_id": 7,
        "trunk": "a-primary",
        "carrier": "Carrier A",
        "prefix": "33",
        "code": 200,
        "pdd_ms": 1200,
        "answer_ms": 5300,
        "at": 1764449000.25,
    }
    event.update(fields)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def test_it_reads_an_attempt():
    event = parse_event(attempt(call_id="abc@pbx", customer="Shop"))
    assert isinstance(event, Attempt)
    assert event.code == 200
    assert event.answered
    assert (event.pdd_ms, event.answer_ms) == (1200, 5300)
    of = event.of
    assert (of.decision_id, of.tenant, of.route, of.trunk_id) == (DID, "tenant-a", 0, 7)
    assert (of.trunk, of.carrier, of.prefix, of.customer) == (
        "a-primary",
        "Carrier A",
        "33",
        "Shop",
    )
    assert of.call_id == "abc@pbx"
    assert of.at == 1764449000.25


def test_it_reads_an_end():
    event = parse_event(attempt(kind="end", code=..., duration_s="62.5"))
    assert isinstance(event, CallEnd)
    assert event.duration_s == 62.5


def test_it_reads_numbers_sent_as_strings():
    event = parse_event(attempt(code="486", route="1", pdd_ms="", answer_ms=None))
    assert isinstance(event, Attempt)
    assert (event.code, event.of.route, event.pdd_ms, event.answer_ms) == (486, 1, None, None)
    assert not event.answered


def test_it_leaves_other_events_alone():
    assert parse_event(b'{"event":"sip-routing","tindex":1,"tlabel":2}') == NotOutcome(
        "sip-routing"
    )


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"{", "not valid JSON"),
        (b"[1]", "not a list"),
        (b"[" * 100000, "not valid JSON"),
        (attempt(kind="bye"), "kind must be"),
        (attempt(decision_id="XYZ"), "decision_id"),
        (attempt(decision_id=...), "decision_id"),
        (attempt(tenant=""), "tenant is required"),
        (attempt(tenant=5), "tenant must be a string"),
        (attempt(route=...), "route is required"),
        (attempt(route=-1), "route must be between"),
        (attempt(code=...), "code is required"),
        (attempt(code=99), "code must be between"),
        (attempt(code=True), "code must be an integer"),
        (attempt(code="2x0"), "code must be an integer"),
        (attempt(pdd_ms=-5), "pdd_ms must be between"),
        (attempt(prefix="9" * 500), "prefix is too long"),
        (attempt(trunk="a\x00b"), "NUL"),
        (attempt(kind="end", duration_s=...), "duration_s is required"),
        (attempt(kind="end", duration_s="NaN"), "duration_s must be between"),
        (attempt(kind="end", duration_s="long"), "duration_s must be a number"),
        (attempt(at=-1), "at must be between"),
    ],
)
def test_it_names_what_is_wrong(payload, words):
    event = parse_event(payload)
    assert isinstance(event, Malformed)
    assert words in event.reason


def test_a_batch_is_one_event_or_an_array():
    assert len(parse_batch(attempt())) == 1
    body = b"[%s,%s,3]" % (attempt(), attempt(kind="end", duration_s=3))
    first, second, third = parse_batch(body)
    assert isinstance(first, Attempt)
    assert isinstance(second, CallEnd)
    assert isinstance(third, Malformed)
    assert isinstance(parse_batch(b'"x"'), Malformed)
    assert isinstance(parse_batch(b"nope"), Malformed)


def test_the_bridge_can_spot_an_outcome_event_cheaply():
    assert is_outcome(attempt())
    assert not is_outcome(b'{"event":"sip-routing"}')


def test_pdd_histogram_bounds():
    assert pdd_bucket(0) == 100
    assert pdd_bucket(100) == 100
    assert pdd_bucket(101) == 250
    assert pdd_bucket(10**6) == 0
