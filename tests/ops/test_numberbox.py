"""The number box: any format in, the live prefix chain, route and targets out; scoped."""

from __future__ import annotations

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from ops import numberbox
from ops.numberbox import NumberBoxError, lookup, lookup_every_tenant
from routing.models import Customer, DialPrefix, HealthState, TrunkHealth
from tests.factories import default_plan, make_route
from versions.publishing import publish

URL = "/admin/number/"
A_SECRETS = ("Carrier A", "a-primary", "a-backup", "France via A", "Tenant A", "UK via A")


@pytest.fixture
def uk_a(tenant_a, trunks_a):
    """44 → 4420 in tenant A: London weighted 70/30 over both trunks."""
    primary, backup = trunks_a
    make_route(tenant_a, "44", backup, description="UK via A")
    return make_route(tenant_a, "4420", (primary, 1, 70), (backup, 1, 30), description="London")


@pytest.mark.parametrize(
    "typed",
    [
        "+44 20 7123 4567",
        "0044 20 7123 4567",
        "442071234567",
        "+44 (20) 7123-4567",
        "44.20.7123.4567",
    ],
)
def test_every_way_of_writing_a_number_finds_the_same_chain(operator_a, uk_a, typed):
    found = lookup(user=operator_a, number=typed)

    assert found.digits == "442071234567"
    assert [link.prefix for link in found.chain] == ["44", "4420"]
    assert found.chosen.route.prefix == "4420"
    assert found.chosen.order_text == "Carrier A/a-primary 70% | Carrier A/a-backup 30%"
    assert found.decision.outcome == "routed"


def test_the_simulation_link_carries_the_customer_and_the_number(operator_a, tenant_a, uk_a):
    found = lookup(user=operator_a, number="0044 20 7123 4567")
    default = Customer.objects.get(tenant=tenant_a, is_default=True)

    assert found.simulate_url == f"/admin/simulator/?customer={default.pk}&callee=%2B442071234567"


def test_a_customer_with_a_dialling_context_reads_national_numbers(operator_a, tenant_a, uk_a):
    uk = Customer.objects.create(
        tenant=tenant_a,
        name="UK PBX",
        plan=default_plan(tenant_a),
        account="uk-pbx",
        country_code="44",
        national_prefix="0",
        international_prefix="00",
    )

    found = lookup(user=operator_a, number="020 7123 4567", customer=uk)

    assert found.digits == "442071234567"
    assert found.chain_text == "44 → 4420"
    assert "national, country 44" in found.how


def test_an_unhealthy_or_inactive_trunk_is_struck_with_the_reason(operator_a, trunks_a, uk_a):
    primary, backup = trunks_a
    TrunkHealth.objects.create(trunk=primary, state=HealthState.UNHEALTHY, since=timezone.now())
    backup.is_active = False
    backup.save()

    found = lookup(user=operator_a, number="442071234567")

    london = next(r for link in found.chain for r in link.routes if r.route.prefix == "4420")
    steps = {s.label: s.off for s in london.steps}
    assert steps == {"Carrier A/a-primary": "unhealthy", "Carrier A/a-backup": "trunk inactive"}
    assert '<s class="ro-off" title="unhealthy">Carrier A/a-primary</s>' in london.order_html
    assert found.decision.code == 503  # nothing usable: the engine says so too


def test_it_shows_the_published_version_not_the_draft(operator_a, tenant_a, trunks_a, uk_a):
    plan = default_plan(tenant_a)
    publish(plan, user=operator_a, comment="v1")
    DialPrefix.objects.filter(plan=plan, prefix="4420").delete()  # a draft edit only

    found = lookup(user=operator_a, number="+442071234567")

    assert found.version == 1
    assert found.chain_text == "44 → 4420"


def test_it_refuses_what_is_not_a_number(operator_a, uk_a):
    with pytest.raises(NumberBoxError, match="is not a phone number"):
        lookup(user=operator_a, number="sip:bob@example.com")


def test_a_superuser_must_name_the_tenant(superuser, tenant_a, uk_a):
    with pytest.raises(NumberBoxError, match="Pick the tenant"):
        lookup(user=superuser, number="442071234567")
    assert lookup(user=superuser, number="442071234567", tenant=tenant_a).chain_text == (
        "44 → 4420"
    )


def test_a_superuser_naming_no_tenant_gets_a_line_per_tenant(
    client, superuser, uk_a, trunks_b, django_assert_max_num_queries
):
    make_route(trunks_b[0].carrier.tenant, "4420", trunks_b[0])
    client.force_login(superuser)

    with django_assert_max_num_queries(40):
        html = client.get(URL, {"n": "+44 20 7123 4567"}).content.decode()

    table = html[html.index('id="nb-tenants"') :]
    assert table.index("Tenant A") < table.index("Tenant B")
    assert "44 → 4420" in table  # A's chain
    assert "<td>4420</td>" in table  # B's: 4420 alone
    assert "?n=%2B44%2020%207123%204567&amp;tenant=tenant-b" in table
    assert 'id="nb-result"' not in html  # the detail is one click away


def test_a_tenant_whose_customer_refuses_the_number_says_why_on_its_line(
    client, superuser, uk_a, trunks_b
):
    Customer.objects.filter(tenant=uk_a.tenant, is_default=True).update(
        country_code="44", national_prefix="0", international_prefix="00"
    )
    client.force_login(superuser)

    response = client.get(URL, {"n": "00"})

    html = response.content.decode()
    assert response.status_code == 200
    table = html[html.index('id="nb-tenants"') :]
    assert "number translation refuses" in table  # tenant A's line
    assert "Tenant B" in table  # still answered


def test_a_superuser_with_one_tenant_gets_its_detail_at_once(client, superuser, uk_a):
    client.force_login(superuser)

    html = client.get(URL, {"n": "442071234567"}).content.decode()

    assert 'id="nb-result"' in html
    assert 'id="nb-tenants"' not in html


def test_every_tenant_is_for_superusers_and_bounded(superuser, operator_a, uk_a, monkeypatch):
    with pytest.raises(NumberBoxError, match="Only a superuser"):
        lookup_every_tenant(user=operator_a, number="442071234567")
    assert [f.tenant.name for f in lookup_every_tenant(user=superuser, number="4420")] == [
        "Tenant A"
    ]
    monkeypatch.setattr(numberbox, "EVERY_TENANT_LIMIT", 0)
    with pytest.raises(NumberBoxError, match="pick the one to look in"):
        lookup_every_tenant(user=superuser, number="442071234567")


def test_the_page_answers_the_operator(client, operator_a, uk_a):
    client.force_login(operator_a)

    html = client.get(URL, {"n": "+44 20 7123 4567"}).content.decode()

    assert 'id="nb-chain"' in html
    assert "4420" in html
    assert "a-primary" in html
    assert "70%" in html
    assert 'id="number-box"' in html  # the header box is on the page too


def test_the_outsider_finds_nothing_of_tenant_a(client, outsider, uk_a, route_b):
    client.force_login(outsider)

    response = client.get(URL, {"n": "+44 20 7123 4567"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "no prefix of this number has a route" in html
    for secret in A_SECRETS:
        assert secret not in html


def test_the_outsider_cannot_name_tenant_a_or_its_customers(client, outsider, tenant_a, uk_a):
    client.force_login(outsider)
    default_a = Customer.objects.get(tenant=tenant_a, is_default=True)

    by_tenant = client.get(URL, {"n": "442071234567", "tenant": tenant_a.slug})
    by_customer = client.get(URL, {"n": "442071234567", "customer": default_a.pk})

    for response in (by_tenant, by_customer):
        html = response.content.decode()
        assert "Select a valid choice" in html
        assert 'id="nb-result"' not in html
        for secret in A_SECRETS:
            assert secret not in html


def test_bad_input_is_a_form_error_not_a_500(client, operator_a, uk_a):
    client.force_login(operator_a)

    response = client.get(URL, {"n": "call me"})

    assert response.status_code == 200
    assert "is not a phone number" in response.content.decode()


def test_a_lookup_costs_the_same_queries_whatever_the_table_size(
    operator_a, tenant_a, uk_a, django_assert_max_num_queries
):
    def grow(count: int) -> None:
        plan = default_plan(tenant_a)
        start = DialPrefix.objects.count()
        DialPrefix.objects.bulk_create(
            DialPrefix(tenant=tenant_a, plan=plan, prefix=f"4420{start + n:07d}")
            for n in range(count)
        )

    with django_assert_max_num_queries(14) as small:
        lookup(user=operator_a, number="+442071234567")
    grow(5000)
    with django_assert_max_num_queries(len(small.captured_queries)):
        found = lookup(user=operator_a, number="+442071234567")
    assert found.chain_text == "44 → 4420"


def test_a_lookup_is_not_counted_as_a_simulation(operator_a, uk_a):
    labels = {"transport": "simulator", "outcome": "routed"}
    before = REGISTRY.get_sample_value("routing_decisions_total", labels) or 0.0

    lookup(user=operator_a, number="+442071234567")

    assert (REGISTRY.get_sample_value("routing_decisions_total", labels) or 0.0) == before
