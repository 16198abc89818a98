"""Least-cost routing: vendors ordered by their rate in force, within the margin guard."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kamailio.rtjson import to_rtjson
from rating.lookup import forget_rate_stores
from routing.models import Customer, RoutingPlan
from routing.resolver import CallRequest, Outcome
from routing.service import decide
from tests.factories import default_plan, make_route, make_trunk
from tests.rating.conftest import HEADER, make_deck

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_rates():
    forget_rate_stores()
    yield
    forget_rate_stores()


@pytest.fixture
def vendors(tenant_a):
    """Three vendors of tenant A, one trunk each, with decks for 33 since January."""
    cheap = make_trunk(tenant_a, "cheap-1", carrier="Cheap")
    mid = make_trunk(tenant_a, "mid-1", carrier="Mid")
    dear = make_trunk(tenant_a, "dear-1", carrier="Dear")
    make_deck(cheap.carrier, HEADER + "33,France,0.0100,0,60,60\n336,France mobile,0.0300,0,1,1\n")
    make_deck(mid.carrier, HEADER + "33,France,0.0150,0,60,60\n")
    make_deck(dear.carrier, HEADER + "3,Zone 3,0.0400,0,60,60\n")
    return cheap, mid, dear


def call(callee="+33123456789", at=NOW, **fields):
    return decide(
        CallRequest(callee=callee, source_ip="192.0.2.10", call_id="lcr", at=at, **fields)
    )


def trunks(decision) -> list[str]:
    return [route.trunk for route in decision.routes]


def test_vendors_are_tried_cheapest_first_with_their_rate_in_the_answer(tenant_a, vendors):
    cheap, mid, dear = vendors
    make_route(tenant_a, "33", dear, mid, cheap, strategy="lcr")  # listed dearest first
    decision = call()
    assert trunks(decision) == ["cheap-1", "mid-1", "dear-1"]
    document = to_rtjson(decision)
    assert [(r["rate"], r["currency"]) for r in document["routes"]] == [
        ("0.010000", "EUR"),
        ("0.015000", "EUR"),
        ("0.040000", "EUR"),
    ]
    assert [line.status for line in decision.costs] == ["first", "later", "later"]
    assert decision.costs[0].why == "cheapest: 0.010000 EUR per minute (rate prefix 33)"
    # The longest rate prefix of each deck prices the number: mobiles cost more at Cheap.
    assert trunks(call(callee="+33612345678"))[0] == "mid-1"


def test_a_vendor_without_a_rate_for_the_number_is_skipped_with_the_reason(tenant_a, vendors):
    cheap, _, _ = vendors
    nowhere = make_trunk(tenant_a, "nowhere-1", carrier="Nowhere")
    make_route(tenant_a, "33", nowhere, cheap, strategy="lcr")
    decision = call()
    assert trunks(decision) == ["cheap-1"]
    assert "Nowhere/nowhere-1: carrier Nowhere has no rate for 33123456789" in decision.skipped


def test_the_margin_guard_keeps_vendors_under_the_sell_rate_less_the_margin(tenant_a, vendors):
    cheap, mid, dear = vendors
    plan = default_plan(tenant_a)
    plan.margin_percent = Decimal("20")
    plan.save()
    make_deck(plan, HEADER + "33,France,0.0200,0,60,60\n")  # sell: 0.02, so vendors <= 0.016
    make_route(tenant_a, "33", cheap, mid, dear, strategy="lcr")
    decision = call()
    assert trunks(decision) == ["cheap-1", "mid-1"]
    assert decision.sell_rate == Decimal("0.020000")
    assert (
        "Dear/dear-1: rate 0.040000 EUR is above 0.016000 (sell rate 0.020000 less 20.00%)"
        in decision.skipped
    )


def test_a_routes_own_guard_overrides_its_plans(tenant_a, vendors):
    cheap, mid, dear = vendors
    make_route(tenant_a, "33", cheap, mid, dear, strategy="lcr", max_cost=Decimal("0.012"))
    assert trunks(call()) == ["cheap-1"]


def test_with_no_vendor_left_a_final_route_answers_its_code(tenant_a, vendors):
    cheap, mid, _ = vendors
    make_route(tenant_a, "", cheap)  # a default route to fall back to
    make_route(tenant_a, "33", mid, strategy="lcr", max_cost=Decimal("0.001"), lcr_code=403)
    fallback = call()
    assert (fallback.outcome, fallback.matched.prefix, trunks(fallback)) == (
        Outcome.ROUTED,
        "",
        ["cheap-1"],
    )
    final = make_route(tenant_a, "331", mid, strategy="lcr", max_cost=Decimal("0.001"))
    final.is_final, final.lcr_code = True, 403
    final.save()
    refused = call(callee="+33123456789")
    assert (refused.outcome, refused.code, refused.reason) == (
        Outcome.NO_ROUTE,
        403,
        "No Vendor Within Margin",
    )


def test_every_trunk_of_the_tenant_can_be_a_candidate(tenant_a, vendors):
    make_route(tenant_a, "33", strategy="lcr_all")
    decision = call()
    assert trunks(decision) == ["cheap-1", "mid-1", "dear-1"]
    assert "least cost over the tenant's 3 trunks" in decision.trace


def test_a_future_deck_takes_over_at_its_time(tenant_a, vendors):
    cheap, mid, _ = vendors
    make_deck(
        mid.carrier, HEADER + "33,France,0.0050,0,60,60\n", at=datetime(2026, 9, 1, tzinfo=UTC)
    )
    make_route(tenant_a, "33", cheap, mid, strategy="lcr")
    assert trunks(call(at=datetime(2026, 8, 31, 23, 59, tzinfo=UTC)))[0] == "cheap-1"
    assert trunks(call(at=datetime(2026, 9, 1, tzinfo=UTC)))[0] == "mid-1"


def test_a_vendor_in_another_currency_than_the_sell_rate_is_not_compared(
    tenant_a, vendors, settings
):
    settings.RATING_ALLOW_MIXED_CURRENCIES = True
    cheap, _, _ = vendors
    usd = make_trunk(tenant_a, "usd-1", carrier="Dollar")
    make_deck(usd.carrier, HEADER + "33,France,0.0010,0,60,60\n", currency="USD")
    make_deck(default_plan(tenant_a), HEADER + "33,France,0.0200,0,60,60\n")
    make_route(tenant_a, "33", usd, cheap, strategy="lcr")
    decision = call()
    assert trunks(decision) == ["cheap-1"]
    assert "Dollar/usd-1: rate in USD, the sell rate in EUR: not comparable" in decision.skipped


def test_a_customers_sell_rate_is_used_before_its_plans(tenant_a, vendors):
    cheap, mid, dear = vendors
    premium = RoutingPlan.objects.create(tenant=tenant_a, name="Premium", margin_percent=0)
    make_route(tenant_a, "33", cheap, mid, dear, strategy="lcr", plan=premium)
    Customer.objects.create(tenant=tenant_a, name="Initech", plan=premium, account="ini")
    make_deck(premium, HEADER + "33,France,0.1000,0,60,60\n")
    make_deck(Customer.objects.get(name="Initech"), HEADER + "33,France,0.0120,0,60,60\n")
    decision = call(account="ini")
    assert decision.sell_rate == Decimal("0.012000")
    assert trunks(decision) == ["cheap-1"]


def test_the_simulator_shows_the_cost_table(client, operator_a, tenant_a, vendors):
    cheap, mid, dear = vendors
    make_route(tenant_a, "33", cheap, mid, dear, strategy="lcr", max_cost=Decimal("0.02"))
    client.force_login(operator_a)
    page = client.get(
        "/admin/simulator/", {"callee": "+33123456789", "source_ip": "192.0.2.10"}
    ).content.decode()
    assert 'id="sim-costs"' in page
    assert "cheapest: 0.010000 EUR per minute (rate prefix 33)" in page
    assert "is above 0.020000 (max cost 0.020000)" in page


def test_the_api_simulator_returns_the_cost_table(client, operator_a, tenant_a, vendors):
    cheap, mid, _ = vendors
    make_route(tenant_a, "33", cheap, mid, strategy="lcr")
    client.force_login(operator_a)
    body = client.post(
        "/api/v1/simulate",
        json.dumps({"callee": "+33123456789", "source_ip": "192.0.2.10"}),
        content_type="application/json",
    ).json()
    assert [(c["trunk"], c["rate"], c["status"]) for c in body["costs"]] == [
        ("cheap-1", "0.010000", "first"),
        ("mid-1", "0.015000", "later"),
    ]
