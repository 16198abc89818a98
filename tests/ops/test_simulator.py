"""The route simulator, through the real admin view: what an operator sees, and never sees."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from prometheus_client import REGISTRY

from tests.factories import make_operator, make_route

URL = "/admin/simulator/"
FRANCE = {"caller": "3312", "callee": "+33612345678"}
A_SECRETS = ("Carrier A", "a-primary", "a-backup", "192.0.2.101", "France via A", "Tenant A")


def simulate(client, user, **params):
    client.force_login(user)
    return client.get(URL, params)


def simulator_count(outcome: str) -> float:
    labels = {"transport": "simulator", "outcome": outcome}
    return REGISTRY.get_sample_value("routing_decisions_total", labels) or 0.0


def test_it_requires_a_staff_login(client, db):
    response = client.get(URL, FRANCE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_superuser_sees_routes_headers_trace_and_rtjson_for_a_source_ip(
    client, superuser, route_a
):
    response = simulate(client, superuser, source_ip="192.0.2.7", **FRANCE)

    assert response.status_code == 200
    result = response.context["result"]
    assert [line.route.trunk for line in result.lines] == ["a-primary", "a-backup"]
    html = response.content.decode()
    assert "sip:+33612345678@192.0.2.101:5060" in html
    assert "source 192.0.2.7 is in 192.0.2.0/24: tenant tenant-a" in html
    assert "priority 1: the only target at this priority (tried first)" in html
    document = json.loads(response.context["rtjson"])
    assert document["success"] is True
    assert [r["uri"] for r in document["routes"]] == [
        "sip:+33612345678@192.0.2.101:5060",
        "sip:+33612345678@a-backup.example.net",
    ]
    assert json.dumps(document, indent=2) in html.replace("&quot;", '"')


def test_it_shows_beaten_prefixes_skipped_targets_and_rewritten_headers(
    client, operator_a, tenant_a, trunks_a, route_a
):
    primary, backup = trunks_a
    make_route(tenant_a, "3", backup, description="Zone 3")
    backup.from_uri = "sip:{caller}@trunk.example.net"
    backup.extra_headers = "P-Asserted-Identity: <sip:{caller}@trunk.example.net>"
    backup.save()
    primary.is_active = False
    primary.save()

    response = simulate(client, operator_a, callee="33612345678", caller="3312")

    html = response.content.decode()
    assert response.context["result"].decision.beaten[0].prefix == "3"
    assert "Zone 3" in html
    assert "Carrier A/a-primary: trunk is inactive" in html
    assert "&lt;sip:3312@trunk.example.net&gt;" in html
    assert "P-Asserted-Identity: &lt;sip:3312@trunk.example.net&gt;" in html


def test_equal_priorities_explain_their_weights(client, operator_a, tenant_a, trunks_a):
    primary, backup = trunks_a
    make_route(tenant_a, "44", (primary, 1, 70), (backup, 1, 30))

    response = simulate(client, operator_a, callee="442071234567", call_id="abc@pbx")

    whys = [line.why for line in response.context["result"].lines]
    assert any("weight 70 of 100" in why and "about 70% of calls" in why for why in whys)
    assert any("weight 30 of 100" in why for why in whys)
    assert all("this Call-ID put it here" in why for why in whys)


def test_a_tenant_user_without_source_or_tenant_simulates_in_their_own_tenant(
    client, operator_a, route_a, route_b
):
    response = simulate(client, operator_a, **FRANCE)

    decision = response.context["result"].decision
    assert decision.tenant.slug == "tenant-a"
    assert [r.trunk for r in decision.routes] == ["a-primary", "a-backup"]


def test_another_tenants_source_and_an_unknown_source_get_the_same_answer(
    client, outsider, route_a, route_b
):
    """No existence oracle: an operator cannot map other tenants' networks."""
    before = simulator_count("forbidden")

    foreign = simulate(client, outsider, source_ip="192.0.2.7", **FRANCE)
    unknown = simulate(client, outsider, source_ip="203.0.113.9", **FRANCE)

    for response in (foreign, unknown):
        assert response.status_code == 200
        decision = response.context["result"].decision
        assert (decision.outcome, decision.code, decision.tenant) == ("forbidden", 403, None)
        html = response.content.decode()
        for secret in (*A_SECRETS, "tenant-a", "192.0.2.0/24"):
            assert secret not in html
    traces = [r.context["result"].decision.trace for r in (foreign, unknown)]
    assert [t.replace("192.0.2.7", "IP").replace("203.0.113.9", "IP") for t in traces[0]] == [
        t.replace("203.0.113.9", "IP") for t in traces[1]
    ]
    assert simulator_count("forbidden") == before + 2


def test_an_outsider_cannot_pick_another_tenants_slug(client, outsider, route_a, route_b):
    response = simulate(client, outsider, tenant="tenant-a", **FRANCE)

    assert response.context["result"] is None
    assert "Select a valid choice" in response.content.decode()
    for secret in A_SECRETS:
        assert secret not in response.content.decode()


def test_an_outsider_simulates_their_own_source_with_their_own_table(
    client, outsider, route_a, route_b
):
    response = simulate(client, outsider, source_ip="198.51.100.9", **FRANCE)

    assert [r.trunk for r in response.context["result"].decision.routes] == [
        "b-primary",
        "b-backup",
    ]
    for secret in A_SECRETS:
        assert secret not in response.content.decode()


def test_the_tenant_choices_are_the_users_own(client, outsider, tenant_a):
    response = simulate(client, outsider)

    choices = [label for _, label in response.context["form"].fields["tenant"].choices]
    assert "Tenant B" in choices
    assert "Tenant A" not in choices


def test_an_unknown_source_is_refused_with_the_sip_answer(client, superuser, route_a):
    response = simulate(client, superuser, source_ip="203.0.113.9", **FRANCE)

    assert response.context["result"].decision.code == 403
    assert "source 203.0.113.9 is in no tenant&#x27;s networks" in response.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"callee": "123"}, "Give a source IP or pick a tenant."),
        ({"callee": "123", "source_ip": "300.1.1.1"}, "Enter a valid IPv4 or IPv6 address."),
        ({"callee": "", "tenant": "tenant-a"}, "This field is required."),
        (
            {"callee": "123", "tenant": "tenant-a", "source_ip": "192.0.2.7"},
            "Give a source IP or a tenant, not both",
        ),
    ],
)
def test_bad_input_gets_a_clear_message(client, superuser, tenant_a, params, message):
    response = simulate(client, superuser, **params)

    assert response.status_code == 200
    assert response.context["result"] is None
    assert message in response.content.decode()


def test_a_simulation_counts_in_the_simulator_metrics(client, superuser, route_a):
    before = simulator_count("routed")

    simulate(client, superuser, tenant="tenant-a", **FRANCE)

    assert simulator_count("routed") == before + 1


def test_tenant_and_prefix_pages_link_to_a_prefilled_simulator(client, operator_a, route_a):
    client.force_login(operator_a)

    prefix_page = client.get(reverse("admin:routing_dialprefix_change", args=[route_a.pk]))
    tenant_page = client.get(reverse("admin:tenants_tenant_change", args=[route_a.tenant_id]))
    index = client.get(reverse("admin:index"))

    assert f"{URL}?tenant=tenant-a&amp;callee=33000000000" in prefix_page.content.decode()
    assert f"{URL}?tenant=tenant-a" in tenant_page.content.decode()
    assert URL in index.content.decode()
    followed = client.get(URL, {"tenant": "tenant-a", "callee": "33000000000"})
    assert followed.context["result"].decision.matched.prefix == "33"


def test_a_staff_user_without_a_tenant_is_refused(client, db):
    nobody = make_operator("nobody", None)

    response = simulate(client, nobody, **FRANCE)

    assert response.status_code == 403


def test_an_operator_simulates_as_one_of_their_customers_but_not_anothers(
    client, operator_a, outsider, route_a, route_b
):
    from routing.models import Customer

    customer_b = Customer.objects.get(tenant=route_b.tenant)
    customer_a = Customer.objects.get(tenant=route_a.tenant)
    own = simulate(client, operator_a, customer=customer_a.pk, **FRANCE)
    html = own.content.decode()
    assert 'customer <span id="sim-customer">Default</span>' in html
    assert 'plan <span id="sim-plan">Default</span>' in html
    assert own.context["result"].decision.routes[0].trunk == "a-primary"
    foreign = simulate(client, operator_a, customer=customer_b.pk, **FRANCE)
    assert foreign.context["result"] is None
    assert "Select a valid choice" in foreign.content.decode()
    assert "Tenant B" not in foreign.content.decode()
