"""The bridge's step between parsing and encoding: one event in, decided, one answer out.

The parsing and encoding themselves are tested with bytes alone in
tests/kamailio/test_evapi.py; here the real resolver and database decide, and
the answers are compared byte for byte with the HTTP endpoint's.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import OperationalError, connection

from api.models import KamailioToken
from evapi_bridge.bridge import Kind, Result, answer_event
from kamailio.requests import call_request_from_fields
from kamailio.rtjson import Failure, to_rtjson
from routing import service
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


def handle(
    body: dict[str, Any] | bytes, default_tenant: str | None = "tenant-a", **options: Any
) -> Result:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return answer_event(payload, default_tenant=default_tenant, **{"table": TABLE, **options})


def answer(result: Result) -> dict[str, Any]:
    assert result.kind is Kind.ANSWERED
    return json.loads(result.answer)


def without_id(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "decision_id"}


def test_a_minimal_event_is_routed_with_the_default_tenant_and_echoes_xtra(route_a):
    result = handle(event())

    document = answer(result)
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}
    assert (document["success"], document["tenant"], document["routing"]) == (
        True,
        "tenant-a",
        "serial",
    )
    assert [route["trunk"] for route in document["routes"]] == ["a-primary", "a-backup"]
    assert document["routes"][0]["uri"] == "sip:+33612345678@192.0.2.101:5060"
    assert (result.caller, result.callee, result.failure) == ("alice", "+33612345678", None)


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


def test_a_malformed_event_is_answered_400_without_deciding(route_a, django_assert_num_queries):
    with django_assert_num_queries(0):
        result = handle(event(callee=None))

    document = answer(result)
    assert (document["code"], document["outcome"]) == (400, "invalid")
    assert (result.failure, result.engine_failed) == (None, False)
    assert result.error.startswith("callee: no callee")


def test_events_that_are_not_answered_say_why():
    assert handle({"event": "dialog-end"}).kind is Kind.IGNORED
    unanswerable = handle(event(tindex=2**32))
    assert (unanswerable.kind, unanswerable.answer) == (Kind.UNANSWERABLE, None)
    assert "beyond 32 bits" in unanswerable.error


def test_a_caller_the_resolver_refuses_gets_a_400_answer(route_a):
    document = answer(handle(event(caller='al"ice <x>')))
    assert (document["code"], document["reason"]) == (400, "Invalid caller")


def test_an_answer_too_large_for_kamailio_becomes_a_500(tenant_a, caplog):
    headers = "".join(f"X-Long-{n}: {'v' * 60}\n" for n in range(20))
    trunks = [make_trunk(tenant_a, f"t{n}", extra_headers=headers) for n in range(20)]
    make_route(tenant_a, "33", *trunks)

    result = handle(event())

    document = answer(result)
    assert (document["code"], document["reason"]) == (500, "Routing Answer Too Large")
    assert document["xtra"] == {"tindex": 123, "tlabel": 456}
    assert (result.failure, result.engine_failed) == (Failure.ANSWER_TOO_LARGE, False)
    assert "over the 32000 Kamailio can read" in result.error
    assert "over the 32000 Kamailio can read" in caplog.text


class FailingTable(DatabaseRouteTable):
    """The database route table, failing the way a lost database does on its third query."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def routes(self, tenant_id: int, candidates: list[str], version):
        raise self.error


def test_a_database_error_gets_a_503_answer_naming_the_database(route_a):
    table = FailingTable(OperationalError("server closed the connection unexpectedly"))

    result = handle(event(), table=table)

    document = answer(result)
    assert (document["success"], document["code"], document["reason"]) == (
        False,
        503,
        "Routing Database Unavailable",
    )
    assert (document["outcome"], document["xtra"]) == ("error", {"tindex": 123, "tlabel": 456})
    assert (result.failure, result.engine_failed) == (Failure.DATABASE_UNAVAILABLE, True)
    assert "server closed the connection" in result.error


def test_a_bug_in_the_engine_gets_a_500_answer(route_a, caplog):
    result = handle(event(), table=FailingTable(KeyError("surprise")))

    document = answer(result)
    assert (document["code"], document["reason"]) == (500, "Routing Engine Failure")
    assert (result.failure, result.engine_failed) == (Failure.ENGINE_FAILURE, True)
    assert "routing engine failed on tindex=123 tlabel=456" in caplog.text


def test_an_overloaded_bridge_answers_503_without_deciding(route_a, django_assert_num_queries):
    with django_assert_num_queries(0):
        result = handle(event(), overloaded=True)

    document = answer(result)
    assert (document["code"], document["reason"]) == (503, "Routing Engine Overloaded")
    assert (result.failure, result.engine_failed) == (Failure.OVERLOADED, False)


# --- The same document over HTTP and over EVAPI, byte for byte --------------------------

_DECISION_ID = re.compile(rb'"decision_id":"[0-9a-f]{32}"')


def pinned(data: bytes) -> bytes:
    """`data` with its one decision_id (a fresh random id per decision) made constant."""
    data, count = _DECISION_ID.subn(b'"decision_id":"ID"', data)
    assert count == 1, data
    return data


@pytest.fixture
def both_transports(client, tenant_a):
    """For a call's fields: (HTTP rtjson document bytes, EVAPI document bytes without xtra)."""
    token = KamailioToken(name="kamailio-1")
    key = token.set_new_key()
    token.save()

    def ask(fields: dict[str, Any]) -> tuple[bytes, bytes]:
        response = client.post(
            "/api/v1/kamailio/rtjson",
            data=json.dumps(fields),
            content_type="application/json",
            headers={"Authorization": f"Token {key}"},
        )
        assert response.status_code == 200, response.content
        http = response.content.removeprefix(b'{"rtjson":').removesuffix(b"}")
        result = handle({**fields, "tindex": 9, "tlabel": 10}, default_tenant=None)
        assert result.kind is Kind.ANSWERED
        xtra = b',"xtra":{"tindex":9,"tlabel":10}}'
        assert result.answer.endswith(xtra)
        return pinned(http), pinned(result.answer.removesuffix(xtra) + b"}")

    return ask


def call(**fields: Any) -> dict[str, Any]:
    body = {
        "event": "sip-routing",
        "source_ip": "192.0.2.7",
        "source_port": 5060,
        "call_id": "a84b4c76e66710@pbx.example.net",
        "from_name": "Zoë",
        "from_uri": "sip:+33123456789@pbx.example.net",
        "to_uri": "sip:+33612345678@sbc.example.net",
        "ruri": "sip:+33612345678@sbc.example.net",
    }
    return {**body, **fields}


def test_every_kind_of_decision_is_the_same_bytes_over_http_and_evapi(
    both_transports, tenant_a, trunks_a
):
    full = make_trunk(
        tenant_a,
        "full",
        outbound_proxy="sip:sbc.example.net",
        from_display="Zoë {caller}",
        from_uri="sip:{caller}@trunk.example.net",
        rewrite_to=True,
        extra_headers="X-Account: acme",
        branch_flags=3,
        fr_timer=2000,
    )
    make_route(tenant_a, "33", full, *trunks_a)
    make_route(tenant_a, "336", (trunks_a[0], 1, 70), (trunks_a[1], 1, 30), routing_mode="parallel")
    make_route(tenant_a, "1", action="location")
    make_route(tenant_a, "900", action="reject", reject_code=403, reject_reason="Barred")
    outcomes = []
    for fields in (
        call(ruri="sip:+33123456789@sbc"),  # serial, every route field, non-ASCII
        call(),  # parallel
        call(ruri="sip:1000@sbc"),  # location
        call(ruri="sip:900123@sbc"),  # reject
        call(ruri="sip:+49301234567@sbc"),  # no route
        call(source_ip="203.0.113.1"),  # unknown source
    ):
        http, evapi = both_transports(fields)
        assert http == evapi
        outcomes.append(json.loads(http)["outcome"])
    assert outcomes == ["routed", "routed", "location", "rejected", "no_route", "forbidden"]


def test_a_database_failure_is_the_same_503_bytes_over_http_and_evapi(both_transports, route_a):
    with connection.cursor() as cursor:  # every later prefix lookup fails for real
        cursor.execute("ALTER TABLE routing_dialprefix RENAME TO routing_dialprefix_gone")

    http, evapi = both_transports(call())

    assert http == evapi
    assert json.loads(http) == {
        "version": "1.0",
        "success": False,
        "decision_id": "ID",
        "outcome": "error",
        "code": 503,
        "reason": "Routing Database Unavailable",
        "routing": "serial",
        "routes": [],
    }


def test_an_engine_failure_is_the_same_500_bytes_over_http_and_evapi(
    both_transports, route_a, monkeypatch
):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(service, "resolve", broken)

    http, evapi = both_transports(call())

    assert http == evapi
    document = json.loads(http)
    assert (document["code"], document["reason"], document["outcome"]) == (
        500,
        "Routing Engine Failure",
        "error",
    )
