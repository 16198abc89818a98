"""The EVAPI protocol with bytes alone: no socket, no database, no resolver."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kamailio.evapi import (
    MAX_ANSWER,
    Answer,
    Ignored,
    Invalid,
    RoutingEvent,
    Unanswerable,
    encode_answer,
    parse_event,
)
from kamailio.rtjson import Failure, encode, failure_decision, to_rtjson
from routing.resolver import Decision, Outcome, Route


def event(**fields: Any) -> dict[str, Any]:
    """The minimal tutorial event, with `fields` added or (as None) removed."""
    body = {"event": "sip-routing", "tindex": 123, "tlabel": 456, "caller": "alice"}
    body["callee"] = "+33612345678"
    body.update(fields)
    return {name: value for name, value in body.items() if value is not None}


def parse(body: dict[str, Any] | bytes, default_tenant: str | None = "tenant-a"):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_event(payload, default_tenant=default_tenant)


def routed(decision_id: str = "d" * 32, **route: Any) -> Decision:
    fields = {"carrier": "C", "trunk": "t", "trunk_id": 1, "priority": 1, "weight": 1}
    return Decision(
        outcome=Outcome.ROUTED,
        routing="serial",
        routes=(Route(**{**fields, "uri": "sip:+33612345678@192.0.2.1", **route}),),
        decision_id=decision_id,
    )


# --- Parsing ---------------------------------------------------------------------------


def test_a_minimal_event_asks_to_route_the_call_with_the_default_tenant():
    parsed = parse(event())

    assert isinstance(parsed, RoutingEvent)
    assert (parsed.tindex, parsed.tlabel) == (123, 456)
    request = parsed.request
    assert (request.tenant, request.caller, request.callee) == ("tenant-a", "alice", "+33612345678")


def test_an_event_with_a_source_ip_is_left_to_the_source_not_the_default_tenant():
    parsed = parse(event(source_ip="198.51.100.7", caller=None, callee=None, ruri="sip:+4930@x"))

    assert isinstance(parsed, RoutingEvent)
    assert (parsed.request.tenant, parsed.request.source_ip) == (None, "198.51.100.7")
    assert parsed.request.callee == "+4930"


@pytest.mark.parametrize(
    "body",
    [{"event": "connection-new"}, {"tindex": 1, "tlabel": 2, "callee": "1"}, {"event": None}],
)
def test_events_that_are_not_routing_events_are_ignored(body):
    parsed = parse(body)

    assert isinstance(parsed, Ignored)
    assert "not a routing event" in parsed.error


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"tindex": None}, "without a usable tindex (None)"),
        ({"tlabel": "x7"}, "without a usable tlabel ('x7')"),
        ({"tindex": True}, "without a usable tindex (True)"),
        ({"tindex": -1}, "without a usable tindex (-1)"),
        ({"tlabel": 1.5}, "without a usable tlabel (1.5)"),
        ({"tlabel": "9" * 5000}, "without a usable tlabel ('99999999"),
    ],
)
def test_a_routing_event_without_usable_transaction_ids_cannot_be_answered(fields, problem):
    parsed = parse(event(**fields))

    assert isinstance(parsed, Unanswerable)
    assert problem in parsed.error


def test_transaction_ids_sent_as_digit_strings_are_read_as_integers():
    parsed = parse(event(tindex="123", tlabel="456"))

    assert (parsed.tindex, parsed.tlabel) == (123, 456)


# Regression: ids beyond Kamailio's unsigned 32 bits used to be echoed back.
@pytest.mark.parametrize(
    "fields",
    [
        {"tindex": 2**32},
        {"tlabel": 2**32},
        {"tlabel": "4294967296"},
        {"tindex": 2**64 + 5},
        {"tindex": 10**30},
    ],
)
def test_transaction_ids_beyond_32_bits_name_no_transaction_and_are_not_answered(fields):
    parsed = parse(event(**fields))

    assert isinstance(parsed, Unanswerable)
    assert "beyond 32 bits" in parsed.error


def test_the_largest_32_bit_transaction_ids_are_answered():
    parsed = parse(event(tindex=2**32 - 1, tlabel="4294967295"))

    assert isinstance(parsed, RoutingEvent)
    assert (parsed.tindex, parsed.tlabel) == (2**32 - 1, 2**32 - 1)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"callee": None}, "Bad Request: callee: no callee"),
        ({"callee": None, "ruri": "http://example.com"}, "Bad Request: ruri:"),
        ({"source_port": "http"}, "Bad Request: source_port: must be a port number"),
        ({"caller": ["alice"]}, "Bad Request: caller: must be a string"),
    ],
)
def test_a_malformed_routing_event_is_answered_400_saying_why(fields, reason):
    parsed = parse(event(**fields))

    assert isinstance(parsed, Invalid)
    assert (parsed.tindex, parsed.tlabel) == (123, 456)
    decision = parsed.decision
    assert (decision.outcome, decision.code, decision.success) == (Outcome.INVALID, 400, False)
    assert decision.reason.startswith(reason)


def test_the_reason_of_a_400_is_one_short_printable_line():
    parsed = parse(event(callee=None, ruri="sip:\r\nInjected: yes" + "x" * 300))

    reason = parsed.decision.reason
    assert "\r" not in reason
    assert "\n" not in reason
    assert len(reason) <= 120
    assert "Injected" in parsed.error  # the log still gets the whole problem


def test_broken_json_that_still_names_its_transaction_is_answered_400():
    """A config that templates the JSON breaks it with a quote in a display name."""
    parsed = parse(b'{"event":"sip-routing","tindex":77,"tlabel":88,"caller":"a"b","callee":"1"}')

    assert isinstance(parsed, Invalid)
    assert (parsed.tindex, parsed.tlabel) == (77, 88)
    assert parsed.decision.reason == "Bad Request: event is not valid JSON"


def test_broken_json_with_ids_beyond_32_bits_is_not_answered():
    parsed = parse(b'{"event":"sip-routing","tindex":9999999999,"tlabel":1,"caller":"a"b"}')

    assert isinstance(parsed, Unanswerable)
    assert "beyond 32 bits" in parsed.error


# Regression: json.loads raised RecursionError, uncaught, so the event went unanswered.
def test_a_deeply_nested_event_that_names_its_transaction_is_answered_400():
    payload = b'{"event":"sip-routing","tindex":1,"tlabel":2,"x":' + b"[" * 1500 + b"]" * 1500
    payload += b"}"

    parsed = parse(payload)

    assert isinstance(parsed, Invalid)
    assert (parsed.tindex, parsed.tlabel) == (1, 2)
    assert (parsed.decision.code, parsed.decision.reason) == (
        400,
        "Bad Request: event is nested too deeply",
    )


def test_a_deeply_nested_event_without_its_transaction_is_unanswerable():
    parsed = parse(b'{"event":"sip-routing","x":' + b"{" * 100_000)

    assert isinstance(parsed, Unanswerable)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b'{"event":"sip-routing","caller":"a"b"}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "event is a JSON list, not an object"),
        (b"", "not valid JSON"),
        (b"[" * 5000, "nested too deeply"),
    ],
)
def test_garbage_without_transaction_ids_is_unanswerable(payload, problem):
    parsed = parse(payload)

    assert isinstance(parsed, Unanswerable)
    assert problem in parsed.error


# --- Encoding --------------------------------------------------------------------------


def test_the_answer_is_the_rtjson_document_then_the_transaction_ids_compact():
    decision = routed(from_display="Zoë", from_uri="sip:alice@pbx")

    answer = encode_answer(decision, tindex=7, tlabel=2**32 - 1)

    assert answer == Answer(
        encode(to_rtjson(decision))[:-1] + b',"xtra":{"tindex":7,"tlabel":4294967295}}',
        decision,
    )
    document = json.loads(answer.payload)
    assert list(document)[-1] == "xtra"
    assert document["routes"][0]["headers"]["from"]["display"] == "Zoë"


def test_a_failure_is_encoded_like_any_decision():
    decision = failure_decision(Failure.OVERLOADED, "shed", decision_id="e" * 32)

    payload = encode_answer(decision, tindex=1, tlabel=2).payload

    assert payload == (
        b'{"version":"1.0","success":false,"decision_id":"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",'
        b'"outcome":"error","code":503,"reason":"Routing Engine Overloaded",'
        b'"routing":"serial","routes":[],"xtra":{"tindex":1,"tlabel":2}}'
    )


def test_an_answer_too_large_for_kamailio_becomes_the_too_large_failure():
    """Kamailio reads an engine's frames into 32 KB: a longer one would wedge the link."""
    headers = tuple((f"X-Long-{n}", "v" * 60) for n in range(20))
    decision = Decision(
        outcome=Outcome.ROUTED,
        routing="serial",
        routes=routed(extra_headers=headers).routes * 30,
    )
    assert len(encode(to_rtjson(decision))) > MAX_ANSWER

    answer = encode_answer(decision, tindex=123, tlabel=456)

    assert (answer.failure, answer.decision.outcome) == (Failure.ANSWER_TOO_LARGE, Outcome.ERROR)
    document = json.loads(answer.payload)
    assert (document["code"], document["reason"]) == (500, "Routing Answer Too Large")
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}
    assert document["decision_id"] != decision.decision_id
    assert "over the 32000 Kamailio can read" in answer.error


def test_an_answer_of_exactly_the_limit_is_sent_and_one_byte_more_is_not():
    size = len(encode_answer(routed(path="p"), tindex=1, tlabel=1).payload)
    fits = routed(path="p" * (1 + MAX_ANSWER - size))

    answer = encode_answer(fits, tindex=1, tlabel=1)

    assert (len(answer.payload), answer.failure) == (MAX_ANSWER, None)
    over = routed(path="p" * (2 + MAX_ANSWER - size))
    assert encode_answer(over, tindex=1, tlabel=1).failure is Failure.ANSWER_TOO_LARGE
