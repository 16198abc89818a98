"""The EVAPI protocol: one event in, exactly one answer out (or a logged reason why not)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError

from evapi_bridge.protocol import Kind, handle_event
from kamailio.requests import call_request_from_fields
from kamailio.rtjson import to_rtjson
from routing.service import decide
from routing.tables import DatabaseRouteTable
from tests.factories import make_route, make_trunk

pytestmark = pytest.mark.django_db

TABLE = DatabaseRouteTable()


def event(**fields: Any) -> dict[str, Any]:
    """The minimal tutorial event, with `fields` added or (as None) removed."""
    body = {"event": "sip-routing", "tindex": 123, "tlabel": 456, "caller": "alice"}
    body["callee"] = "+33612345678"
    body.update(fields)
    return {name: value for name, value in body.items() if value is not None}


def handle(body: dict[str, Any] | bytes, default_tenant: str | None = "tenant-a"):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return handle_event(payload, table=TABLE, default_tenant=default_tenant)


def answer(result) -> dict[str, Any]:
    assert result.kind is Kind.ANSWERED
    return json.loads(result.answer)


def without_id(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "decision_id"}


def test_a_minimal_event_is_routed_with_the_default_tenant_and_echoes_xtra(route_a):
    document = answer(handle(event()))
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}
    assert (document["success"], document["tenant"], document["routing"]) == (
        True,
        "tenant-a",
        "serial",
    )
    assert [route["trunk"] for route in document["routes"]] == ["a-primary", "a-backup"]
    assert document["routes"][0]["uri"] == "sip:+33612345678@192.0.2.101:5060"


def test_the_answer_is_the_shared_resolvers_rtjson_plus_xtra(route_a):
    fields = event(
        source_ip="192.0.2.7",
        call_id="abc@pbx",
        from_uri="sip:+33123456789@pbx.example.net",
        ruri="sip:+33612345678@sbc.example.net",
        caller=None,
        callee=None,
    )
    document = answer(handle(fields, default_tenant=None))
    expected = to_rtjson(decide(call_request_from_fields(fields), table=TABLE))
    assert document.pop("xtra") == {"tindex": 123, "tlabel": 456}
    assert without_id(document) == without_id(expected)
    assert document["decision_id"]
    assert document["decision_id"] != expected["decision_id"]


def test_an_event_from_tenant_b_never_gets_tenant_a_routes(route_a, route_b):
    """The source IP names the tenant; the bridge's default tenant does not override it."""
    document = answer(handle(event(source_ip="198.51.100.7"), default_tenant="tenant-a"))
    assert document["tenant"] == "tenant-b"
    assert {route["trunk"] for route in document["routes"]} == {"b-primary", "b-backup"}


def test_an_unknown_source_is_refused_and_not_given_to_the_default_tenant(route_a):
    document = answer(handle(event(source_ip="203.0.113.9"), default_tenant="tenant-a"))
    assert (document["success"], document["code"], document["routes"]) == (False, 403, [])
    assert "tenant" not in document


def test_without_source_ip_nor_default_tenant_the_call_is_refused(route_a):
    result = handle(event(), default_tenant=None)
    document = answer(result)
    assert (document["success"], document["code"], document["reason"]) == (
        False,
        403,
        "Forbidden",
    )
    assert result.outcome == "forbidden"


def test_a_location_route_answers_routing_location(tenant_a):
    make_route(tenant_a, "1000", action="location")
    document = answer(handle(event(callee="1000")))
    assert (document["success"], document["routing"], document["routes"]) == (
        True,
        "location",
        [],
    )


def test_a_reject_route_answers_its_code_and_reason(tenant_a):
    make_route(tenant_a, "900", action="reject", reject_code=403, reject_reason="Premium Barred")
    document = answer(handle(event(callee="900123")))
    assert (document["success"], document["code"], document["reason"]) == (
        False,
        403,
        "Premium Barred",
    )
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}


@pytest.mark.parametrize(
    "body",
    [{"event": "connection-new"}, {"tindex": 1, "tlabel": 2, "callee": "1"}, {"event": None}],
)
def test_events_that_are_not_routing_events_are_ignored(body):
    result = handle(body)
    assert (result.kind, result.answer) == (Kind.IGNORED, None)
    assert "not a routing event" in result.error


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"tindex": None}, "without a usable tindex (None)"),
        ({"tlabel": "x7"}, "without a usable tlabel ('x7')"),
        ({"tindex": True}, "without a usable tindex (True)"),
        ({"tindex": -1}, "without a usable tindex (-1)"),
        ({"tlabel": 1.5}, "without a usable tlabel (1.5)"),
    ],
)
def test_a_routing_event_without_usable_transaction_ids_cannot_be_answered(fields, problem):
    result = handle(event(**fields))
    assert (result.kind, result.answer) == (Kind.UNANSWERABLE, None)
    assert problem in result.error


def test_transaction_ids_sent_as_digit_strings_are_answered_as_integers(route_a):
    document = answer(handle(event(tindex="123", tlabel="456")))
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"callee": None}, "Bad Request: callee: no callee"),
        ({"callee": None, "ruri": "http://example.com"}, "Bad Request: ruri:"),
        ({"source_port": "http"}, "Bad Request: source_port: must be a port number"),
        ({"caller": ["alice"]}, "Bad Request: caller: must be a string"),
    ],
)
def test_a_malformed_routing_event_gets_a_400_answer_saying_why(route_a, fields, reason):
    result = handle(event(**fields))
    document = answer(result)
    assert (document["success"], document["code"], document["outcome"]) == (
        False,
        400,
        "invalid",
    )
    assert document["reason"].startswith(reason)
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}
    assert not result.engine_failed


def test_a_caller_the_resolver_refuses_gets_a_400_answer(route_a):
    document = answer(handle(event(caller='al"ice <x>')))
    assert (document["code"], document["reason"]) == (400, "Invalid caller")


def test_the_reason_of_a_400_is_one_short_printable_line(route_a):
    document = answer(handle(event(callee=None, ruri="sip:\r\nInjected: yes" + "x" * 300)))
    assert "\r" not in document["reason"]
    assert "\n" not in document["reason"]
    assert len(document["reason"]) <= 120


def test_broken_json_that_still_names_its_transaction_gets_a_400_answer():
    """A config that templates the JSON breaks it with a quote in a display name."""
    payload = b'{"event":"sip-routing","tindex":77,"tlabel":88,"caller":"a"b","callee":"1"}'
    document = answer(handle(payload))
    assert (document["code"], document["xtra"]) == (400, {"tindex": 77, "tlabel": 88})
    assert document["reason"] == "Bad Request: event is not valid JSON"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b'{"event":"sip-routing","caller":"a"b"}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "event is a JSON list, not an object"),
        (b"", "not valid JSON"),
    ],
)
def test_garbage_without_transaction_ids_is_unanswerable(payload, problem):
    result = handle(payload)
    assert (result.kind, result.answer) == (Kind.UNANSWERABLE, None)
    assert problem in result.error


def test_an_answer_too_large_for_kamailio_becomes_a_500(tenant_a):
    """Kamailio reads an engine's frames into 32 KB: a longer one would wedge the link."""
    headers = "".join(f"X-Long-{n}: {'v' * 60}\n" for n in range(20))
    trunks = [make_trunk(tenant_a, f"t{n}", extra_headers=headers) for n in range(20)]
    make_route(tenant_a, "33", *trunks)
    result = handle(event())
    document = answer(result)
    assert (document["code"], document["reason"]) == (500, "Routing Answer Too Large")
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}
    assert "over the 32000 Kamailio can read" in result.error


class FailingTable(DatabaseRouteTable):
    """The database route table, failing the way a lost database does on its third query."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def targets(self, prefix_id: int):
        raise self.error


def test_a_database_error_gets_a_503_answer_naming_the_engine(route_a):
    table = FailingTable(OperationalError("server closed the connection unexpectedly"))
    result = handle_event(json.dumps(event()).encode(), table=table, default_tenant="tenant-a")
    document = answer(result)
    assert (document["success"], document["code"], document["reason"]) == (
        False,
        503,
        "Routing Database Unavailable",
    )
    assert (document["outcome"], document["xtra"]) == ("error", {"tindex": 123, "tlabel": 456})
    assert result.engine_failed
    assert "server closed the connection" in result.error


def test_a_bug_in_the_engine_gets_a_500_answer(route_a):
    table = FailingTable(KeyError("surprise"))
    document = answer(
        handle_event(json.dumps(event()).encode(), table=table, default_tenant="tenant-a")
    )
    assert (document["code"], document["reason"]) == (500, "Routing Engine Failure")
