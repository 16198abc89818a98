"""POST /api/v1/simulate: the decision with its trace, for operators; never across tenants."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from routing.models import Trunk
from tests.api.conftest import call_body
from tests.factories import make_route

pytestmark = pytest.mark.django_db


def logged_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)  # a session, as from the admin
    return client


def test_it_explains_the_decision(operator_a, route_a, tenant_a, trunks_a):
    make_route(tenant_a, "3361", action="reject", reject_code=403, is_active=False)
    make_route(tenant_a, "336", trunks_a[0], trunks_a[1])
    Trunk.objects.filter(pk=trunks_a[1].pk).update(is_active=False)

    response = logged_in(operator_a).post("/api/v1/simulate", {"callee": "+33612345678"})

    result = response.json()
    assert response.status_code == 200, result
    assert (result["outcome"], result["tenant"]) == ("routed", "tenant-a")
    assert result["matched"]["prefix"] == "336"
    assert [row["prefix"] for row in result["beaten"]] == ["33"]
    assert result["skipped"] == ["Carrier A/a-backup: trunk is inactive"]
    assert [route["trunk"] for route in result["routes"]] == ["a-primary"]
    assert any("3361 is inactive" in line for line in result["trace"])
    assert result["rtjson"]["routes"][0]["uri"] == "sip:+33612345678@192.0.2.101:5060"


def test_a_tenant_user_only_ever_simulates_their_own_table(outsider, route_a, route_b):
    client = logged_in(outsider)

    own_source = client.post("/api/v1/simulate", call_body(source_ip="198.51.100.7")).json()
    no_source = client.post("/api/v1/simulate", {"callee": "+3361"}).json()
    other_source = client.post("/api/v1/simulate", call_body(source_ip="192.0.2.7"))
    other_name = client.post("/api/v1/simulate", {"callee": "+3361", "tenant": "tenant-a"})

    assert own_source["tenant"] == no_source["tenant"] == "tenant-b"
    assert {route["carrier"] for route in own_source["routes"]} == {"Carrier B"}
    unknown_source = client.post("/api/v1/simulate", call_body(source_ip="203.0.113.9"))
    # Another tenant's source and an unknown one: the same answer, naming no tenant.
    for response in (other_source, unknown_source):
        assert response.status_code == 200
        assert (response.json()["outcome"], response.json()["code"]) == ("forbidden", 403)
        assert response.json()["tenant"] is None
    assert "tenant-a" not in other_source.content.decode()
    assert other_source.json()["trace"] == [
        line.replace("203.0.113.9", "192.0.2.7") for line in unknown_source.json()["trace"]
    ]
    assert other_name.status_code == 400
    assert "tenant" in other_name.json()


def test_a_superuser_picks_the_tenant_or_lets_the_source_decide(superuser, route_a, route_b):
    client = logged_in(superuser)

    named = client.post("/api/v1/simulate", {"callee": "+3361", "tenant": "tenant-b"}).json()
    by_source = client.post("/api/v1/simulate", call_body(source_ip="192.0.2.7")).json()

    assert (named["tenant"], by_source["tenant"]) == ("tenant-b", "tenant-a")


def test_it_needs_a_user_not_a_kamailio_token(client, kamailio_key, route_a):
    response = client.post(
        "/api/v1/simulate",
        call_body(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {kamailio_key}",
    )

    assert response.status_code == 401


def test_bad_input_is_a_400(operator_a):
    response = logged_in(operator_a).post("/api/v1/simulate", {"ruri": "nonsense"})

    assert response.status_code == 400
    assert "ruri" in response.json()


def test_an_unknown_source_is_explained_not_an_error(superuser, route_a):
    response = logged_in(superuser).post("/api/v1/simulate", call_body(source_ip="203.0.113.9"))

    result = response.json()
    assert (response.status_code, result["outcome"], result["code"]) == (200, "forbidden", 403)
    assert (result["tenant"], result["matched"], result["routes"]) == (None, None, [])
    assert "203.0.113.9 is in no tenant's networks" in result["trace"][0]


def test_a_source_ip_and_a_tenant_together_are_refused_as_in_the_admin(superuser, route_a):
    client = logged_in(superuser)
    both = client.post("/api/v1/simulate", call_body(source_ip="192.0.2.7", tenant="tenant-a"))
    assert both.status_code == 400
    assert both.json() == {
        "non_field_errors": [
            "Give a source IP or a tenant, not both: with a source IP the tenant comes from "
            "its network."
        ]
    }


def test_an_operator_simulates_by_customer_or_by_plan_of_their_own(operator_a, route_a, route_b):
    from routing.models import Customer, RoutingPlan
    from tests.factories import make_route

    premium = RoutingPlan.objects.create(tenant=route_a.tenant, name="Premium")
    make_route(route_a.tenant, "33", route_a.targets.last().trunk, plan=premium)
    initech = Customer.objects.create(
        tenant=route_a.tenant, name="Initech", plan=premium, account="init"
    )
    client = logged_in(operator_a)

    by_customer = client.post("/api/v1/simulate", {"callee": "+3361", "customer": initech.pk})
    by_plan = client.post("/api/v1/simulate", {"callee": "+3361", "plan": premium.pk})
    by_account = client.post("/api/v1/simulate", {"callee": "+3361", "account": "init"})
    for response in (by_customer, by_plan, by_account):
        assert response.status_code == 200, response.json()
        assert response.json()["plan"] == "Premium"
        assert response.json()["routes"][0]["trunk"] == "a-backup"
    assert by_customer.json()["customer"] == by_account.json()["customer"] == "Initech"
    assert by_plan.json()["customer"] is None

    foreign_plan = RoutingPlan.objects.get(tenant=route_b.tenant)
    refused = client.post("/api/v1/simulate", {"callee": "+3361", "plan": foreign_plan.pk})
    assert refused.status_code == 400
    assert "Invalid pk" in str(refused.json()["plan"])  # as for a plan that does not exist
    both = client.post("/api/v1/simulate", {"callee": "+3361", "plan": premium.pk,
                                            "customer": initech.pk})  # fmt: skip
    assert both.status_code == 400
    assert "one of a source IP, a tenant, a customer or a routing plan" in str(both.json())
