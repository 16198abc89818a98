"""The rtjson document and the one set of failure answers (no database, no server)."""

from __future__ import annotations

import json
import re

import pytest
from django.db import DatabaseError, InterfaceError, OperationalError, ProgrammingError

from kamailio.rtjson import Failure, encode, failure_decision, failure_of, to_rtjson
from routing.resolver import Decision, Outcome, Route


@pytest.mark.parametrize(
    ("failure", "code", "reason"),
    [
        (Failure.DATABASE_UNAVAILABLE, 503, "Routing Database Unavailable"),
        (Failure.ENGINE_FAILURE, 500, "Routing Engine Failure"),
        (Failure.OVERLOADED, 503, "Routing Engine Overloaded"),
        (Failure.ANSWER_TOO_LARGE, 500, "Routing Answer Too Large"),
    ],
)
def test_each_failure_is_an_error_document_with_its_code_reason_and_an_id(failure, code, reason):
    decision = failure_decision(failure, "what the log needs")

    assert decision.trace == ("what the log needs",)
    document = to_rtjson(decision)
    assert re.fullmatch(r"[0-9a-f]{32}", document.pop("decision_id"))
    assert document == {
        "version": "1.0",
        "success": False,
        "outcome": "error",
        "code": code,
        "reason": reason,
        "routing": "serial",
        "routes": [],
    }


def test_every_failure_answer_gets_its_own_decision_id_unless_one_is_given():
    first, second = (failure_decision(Failure.ENGINE_FAILURE) for _ in range(2))

    assert first.decision_id != second.decision_id
    pinned = failure_decision(Failure.ENGINE_FAILURE, decision_id="0" * 32)
    assert to_rtjson(pinned)["decision_id"] == "0" * 32


@pytest.mark.parametrize(
    "exc",
    [
        DatabaseError("x"),
        OperationalError("server closed the connection unexpectedly"),
        ProgrammingError('relation "routing_dialprefix" does not exist'),
        InterfaceError("connection already closed"),
    ],
)
def test_database_errors_are_the_database_being_unavailable(exc):
    assert failure_of(exc) is Failure.DATABASE_UNAVAILABLE


@pytest.mark.parametrize("exc", [KeyError("bug"), RecursionError(), ValueError("x")])
def test_anything_else_is_an_engine_failure(exc):
    assert failure_of(exc) is Failure.ENGINE_FAILURE


def test_only_database_and_engine_failures_count_as_the_engine_failing():
    assert {f for f in Failure if f.engine_failed} == {
        Failure.DATABASE_UNAVAILABLE,
        Failure.ENGINE_FAILURE,
    }


def test_the_encoding_is_compact_ascii_and_keeps_the_key_order():
    route = Route(
        carrier="C", trunk="t", trunk_id=1, priority=1, weight=1, uri="sip:1@h", from_display="Zoë"
    )
    decision = Decision(
        outcome=Outcome.ROUTED,
        routing="serial",
        routes=(route,),
        decision_id="f" * 32,
    )

    data = encode(to_rtjson(decision))

    assert data.startswith(b'{"version":"1.0","success":true,"decision_id":"ffff')
    assert b'"display":"Zo\\u00eb"' in data
    assert data.isascii()
    assert json.loads(data)["routes"][0]["headers"]["from"]["display"] == "Zoë"


@pytest.mark.parametrize(
    ("codes", "regex"),
    [
        ("5xx, 408", "^(5[0-9][0-9]|408)$"),
        ("486", "^(486)$"),
        ("5XX 6xx", "^(5[0-9][0-9]|6[0-9][0-9])$"),
    ],
)
def test_a_trunks_failover_codes_become_the_regex_kamailio_checks(codes, regex):
    from kamailio.rtjson import failover_regex

    assert failover_regex(codes) == regex


def _routed(*routes: Route) -> dict:
    decision = Decision(
        outcome=Outcome.ROUTED, routing="serial", routes=routes, decision_id="a" * 32
    )
    return json.loads(encode(to_rtjson(decision)))


def test_a_trunks_caps_go_in_its_route_for_kamailio_to_enforce():
    capped = Route(
        carrier="C", trunk="t1", trunk_id=1, priority=1, weight=1, uri="sip:1@h",
        max_calls=5, max_cps=10,
    )  # fmt: skip
    calls_only = Route(
        carrier="C", trunk="t2", trunk_id=2, priority=2, weight=1, uri="sip:1@h2", max_calls=3
    )

    first, second = _routed(capped, calls_only)["routes"]

    assert (first["max_calls"], first["max_cps"]) == (5, 10)
    assert second["max_calls"] == 3
    assert "max_cps" not in second


def test_a_trunk_without_caps_has_no_cap_keys():
    route = Route(carrier="C", trunk="t", trunk_id=1, priority=1, weight=1, uri="sip:1@h")

    [item] = _routed(route)["routes"]

    assert "max_calls" not in item
    assert "max_cps" not in item
