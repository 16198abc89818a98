"""The resolver's screen: a blocked call is refused with the list's code, before any route."""

from __future__ import annotations

import json

import pytest

from kamailio.rtjson import to_rtjson
from routing.resolver import CallRequest, Outcome
from routing.service import decide
from routing.tables import DatabaseRouteTable
from tests.blocklists.conftest import make_list
from tests.factories import make_route

pytestmark = pytest.mark.django_db

SOURCES = ["blocklists.lookup.database_source", "blocklists.lookup.compiled_source"]


@pytest.fixture(params=SOURCES)
def screen(request, settings):
    settings.ROUTING_SCREEN_SOURCE = request.param
    return request.param


def call(callee: str, caller: str = "+33111", source_ip: str = "192.0.2.10", **fields):
    request = CallRequest(callee=callee, caller=caller, source_ip=source_ip, **fields)
    return decide(request, table=DatabaseRouteTable())


def test_a_blocked_caller_gets_the_lists_code_and_the_trace_says_why(tenant_a, route_a, screen):
    make_list(tenant_a, "Fraud", "caller", "4420*\n", reply_code=603, reply_reason="Decline Fraud")
    decision = call("+33123456789", caller="+44201234")
    assert decision.outcome == Outcome.BLOCKED
    assert (decision.code, decision.reason) == (603, "Decline Fraud")
    assert decision.routes == ()
    assert decision.matched is None  # refused before any route was matched
    assert decision.tenant.slug == "tenant-a"
    assert "blocked by caller list 'Fraud' (entry 4420, prefix)" in decision.trace
    assert decision.trace[-1] == "answer 603 Decline Fraud"
    document = to_rtjson(decision)
    assert document["success"] is False
    assert (document["code"], document["reason"], document["outcome"]) == (
        603,
        "Decline Fraud",
        "blocked",
    )
    assert document["routes"] == []
    # Another caller is routed.
    assert call("+33123456789", caller="+4430").outcome == Outcome.ROUTED


def test_callee_and_source_lists(tenant_a, route_a, screen):
    make_list(tenant_a, "Premium", "callee", "3389*\n")
    make_list(tenant_a, "Bad PBX", "source", "192.0.2.66/32\n", reply_code=403)
    decision = call("+33891234")
    assert decision.outcome == Outcome.BLOCKED
    assert "blocked by callee list 'Premium' (entry 3389, prefix)" in decision.trace
    decision = call("+33123", source_ip="192.0.2.66")
    assert "blocked by source list 'Bad PBX' (entry 192.0.2.66/32, network)" in decision.trace
    assert call("+33123", source_ip="192.0.2.67").outcome == Outcome.ROUTED


def test_the_callee_is_screened_without_the_customers_technical_prefix(tenant_a, trunks_a, screen):
    from routing.models import Customer

    customer = Customer.objects.create(
        tenant=tenant_a,
        name="Tech",
        plan=route_plan(tenant_a),
        tech_prefix="777",
        account="tech",
    )
    make_route(tenant_a, "33", *trunks_a)
    make_list(tenant_a, "Premium", "callee", "3389*\n", customer=customer)
    decision = call("7773389123", account="tech")
    assert decision.outcome == Outcome.BLOCKED
    assert decision.customer.name == "Tech"
    # The default customer's calls to the same number are routed.
    assert call("+3389123").outcome == Outcome.ROUTED


def route_plan(tenant):
    from tests.factories import default_plan

    return default_plan(tenant)


def test_an_inactive_list_or_another_tenants_list_blocks_nothing(
    tenant_a, tenant_b, route_a, screen
):
    make_list(tenant_a, "Off", "caller", "33111\n", is_active=False)
    make_list(tenant_b, "Theirs", "caller", "33111\n")
    assert call("+33123").outcome == Outcome.ROUTED


def test_without_a_screen_nothing_is_blocked(tenant_a, route_a, settings):
    settings.ROUTING_SCREEN_SOURCE = ""
    make_list(tenant_a, "Fraud", "caller", "33111\n")
    assert call("+33123").outcome == Outcome.ROUTED


def test_a_blocked_call_over_http_is_success_false_with_the_code(tenant_a, route_a, screen, client):
    from tests.api.conftest import RTJSON_URL, call_body, make_token

    make_list(tenant_a, "Fraud", "caller", "4420*\n", reply_code=486, reply_reason="Busy Here")
    key, _ = make_token()
    response = client.post(
        RTJSON_URL,
        json.dumps(call_body(from_uri="sip:+4420555@pbx.example.net")),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
        REMOTE_ADDR="127.0.0.1",
    )
    document = response.json()["rtjson"]
    assert (document["success"], document["code"], document["reason"]) == (False, 486, "Busy Here")
    assert document["outcome"] == "blocked"
