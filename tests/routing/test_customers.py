"""Customers and routing plans: who a call belongs to, and by which plan it is routed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from routing import services
from routing.models import Customer, CustomerSource, RoutingPlan
from routing.resolver import CallRequest, Outcome
from routing.service import decide
from routing.services import SourceSpec
from tests.factories import default_plan, make_route

pytestmark = pytest.mark.django_db


@pytest.fixture
def plans(tenant_a, trunks_a):
    """Tenant A sells two plans over the same trunks: Default via a-primary, Premium via
    a-backup."""
    primary, backup = trunks_a
    premium = RoutingPlan.objects.create(tenant=tenant_a, name="Premium")
    make_route(tenant_a, "33", primary)
    make_route(tenant_a, "33", backup, plan=premium)
    return default_plan(tenant_a), premium


def customer(tenant, name, plan, *sources, **rules) -> Customer:
    row = Customer.objects.create(tenant=tenant, name=name, plan=plan, **rules)
    for network, port in sources:
        CustomerSource.objects.create(customer=row, network=network, port=port)
    return row


def call(callee="+33123456789", source_ip="192.0.2.10", **fields):
    return decide(CallRequest(callee=callee, source_ip=source_ip, call_id="c", **fields))


def first_trunk(decision) -> str:
    return decision.routes[0].trunk


def test_a_customer_is_recognised_by_its_source_and_routed_by_its_plan(tenant_a, plans):
    _default, premium = plans
    customer(tenant_a, "Initech", premium, ("192.0.2.10/32", None))
    decision = call()
    assert (decision.customer.name, decision.plan, first_trunk(decision)) == (
        "Initech",
        "Premium",
        "a-backup",
    )
    other = call(source_ip="192.0.2.11")
    assert (other.customer.name, other.plan, first_trunk(other)) == (
        "Default",
        "Default",
        "a-primary",
    )


def test_a_source_port_tells_two_pbxs_behind_one_address_apart(tenant_a, plans):
    default, premium = plans
    customer(tenant_a, "PBX 5060", premium, ("192.0.2.10/32", 5060))
    customer(tenant_a, "PBX 5070", default, ("192.0.2.10/32", 5070))
    assert call(source_port=5060).customer.name == "PBX 5060"
    assert call(source_port=5070).customer.name == "PBX 5070"
    assert call(source_port=5080).customer.name == "Default"


def test_a_technical_prefix_is_recognised_and_removed_before_matching(tenant_a, plans):
    _default, premium = plans
    customer(tenant_a, "Umbrella", premium, tech_prefix="4711#")
    decision = call(callee="4711#33123456789")
    assert (decision.customer.name, decision.callee, first_trunk(decision)) == (
        "Umbrella",
        "33123456789",
        "a-backup",
    )
    assert decision.routes[0].uri.startswith("sip:33123456789@")
    assert "technical prefix 4711# removed: routing 33123456789" in decision.trace


def test_the_account_header_names_a_customer(tenant_a, plans):
    _default, premium = plans
    customer(tenant_a, "Hooli", premium, account="hooli-7")
    assert call(account="hooli-7").customer.name == "Hooli"
    assert call(account="someone-else").customer.name == "Default"


def test_the_most_specific_customer_wins_in_the_documented_order(tenant_a, plans):
    default, _premium = plans
    customer(tenant_a, "wide network", default, ("192.0.2.0/24", None))
    customer(tenant_a, "narrow network", default, ("192.0.2.0/28", None))
    customer(tenant_a, "narrow network and port", default, ("192.0.2.0/28", 5060))
    customer(tenant_a, "tech prefix 47", default, tech_prefix="47")
    customer(tenant_a, "tech prefix 4711", default, tech_prefix="4711")
    customer(tenant_a, "account", default, account="acc")
    assert call().customer.name == "narrow network"
    assert call(source_port=5060).customer.name == "narrow network and port"
    assert call(source_ip="192.0.2.100").customer.name == "wide network"
    assert call(callee="4733123456789").customer.name == "tech prefix 47"
    assert call(callee="471133123456789").customer.name == "tech prefix 4711"
    assert call(callee="471133123456789", account="acc").customer.name == "account"


def test_every_rule_of_a_customer_must_match(tenant_a, plans):
    _default, premium = plans
    customer(tenant_a, "both", premium, ("192.0.2.0/28", None), tech_prefix="99")
    assert call(callee="9933123456789").customer.name == "both"
    assert call(callee="9933123456789", source_ip="192.0.2.200").customer.name == "Default"


def test_without_a_default_customer_an_unknown_caller_is_refused(tenant_a, plans):
    _default, premium = plans
    Customer.objects.filter(is_default=True).delete()
    customer(tenant_a, "Initech", premium, ("192.0.2.10/32", None))
    refused = call(source_ip="192.0.2.11")
    assert (refused.outcome, refused.code, refused.customer) == (Outcome.FORBIDDEN, 403, None)
    assert "no customer of tenant tenant-a matches this call" in refused.trace


def test_an_inactive_customer_is_refused_never_given_another_plan(tenant_a, plans):
    _default, premium = plans
    customer(tenant_a, "Initech", premium, ("192.0.2.10/32", None), is_active=False)
    refused = call()
    assert (refused.outcome, refused.code) == (Outcome.FORBIDDEN, 403)
    assert "customer Initech is inactive" in refused.trace


def test_trusted_callers_may_name_the_customer_or_the_plan(tenant_a, plans):
    _default, premium = plans
    customer(tenant_a, "Initech", premium, ("192.0.2.10/32", None))
    by_customer = call(source_ip=None, tenant="tenant-a", customer="Initech")
    by_plan = call(source_ip=None, tenant="tenant-a", plan="Premium")
    assert first_trunk(by_customer) == first_trunk(by_plan) == "a-backup"
    unknown = call(source_ip=None, tenant="tenant-a", plan="Gold")
    assert (unknown.outcome, unknown.code, unknown.reason) == (
        Outcome.INVALID,
        400,
        "Unknown Routing Plan",
    )


def test_a_customer_of_tenant_b_is_never_used_for_tenant_a(tenant_a, tenant_b, plans):
    plan_b = default_plan(tenant_b)
    customer(tenant_b, "B's account", plan_b, account="shared")
    decision = call(account="shared")
    assert (decision.tenant.slug, decision.customer.name) == ("tenant-a", "Default")


# --- Saving customers: the rules that keep recognition unambiguous -----------------------


def save(user, tenant, name, plan, sources=(), **rules):
    row = Customer(tenant=tenant, name=name, plan=plan, **rules)
    services.save_customer(user=user, customer=row, sources=[SourceSpec(n, p) for n, p in sources])
    return row


def test_a_customer_needs_a_rule(operator_a, tenant_a, plans):
    with pytest.raises(ValidationError, match="at least one rule"):
        save(operator_a, tenant_a, "nothing", plans[0])


def test_an_exact_duplicate_recognition_is_refused_naming_the_other(operator_a, tenant_a, plans):
    save(operator_a, tenant_a, "first", plans[0], [("192.0.2.0/28", 5060)])
    with pytest.raises(ValidationError) as refused:
        save(operator_a, tenant_a, "second", plans[1], [("192.0.2.0/28", 5060)])
    assert "Customer first is already recognised the same way (network 192.0.2.0/28 port 5060)" in (
        str(refused.value)
    )
    save(operator_a, tenant_a, "other port", plans[1], [("192.0.2.0/28", 5070)])  # fine
    save(operator_a, tenant_a, "narrower", plans[1], [("192.0.2.0/29", 5060)])  # fine
    save(operator_a, tenant_a, "by prefix", plans[1], tech_prefix="47")
    with pytest.raises(ValidationError, match="Customer by prefix is already recognised"):
        save(operator_a, tenant_a, "by prefix again", plans[0], tech_prefix="47")


def test_a_source_outside_the_tenants_networks_is_refused(operator_a, tenant_a, plans):
    with pytest.raises(services.SourcesInvalid) as refused:
        save(operator_a, tenant_a, "lost", plans[0], [("203.0.113.0/24", None)])
    assert "is not within the tenant's source networks (192.0.2.0/24, 2001:db8:a::/48)" in str(
        refused.value.errors[0]
    )


def test_the_default_customer_has_no_rules_and_is_one_per_tenant(operator_a, tenant_a, plans):
    with pytest.raises(ValidationError, match="already has a default customer"):
        save(operator_a, tenant_a, "second default", plans[0], is_default=True)
    default = Customer.objects.get(tenant=tenant_a, is_default=True)
    default.tech_prefix = "12"
    with pytest.raises(ValidationError, match="cannot have a technical prefix"):
        services.save_customer(user=operator_a, customer=default, sources=None)


def test_a_plan_of_another_tenant_is_refused(operator_a, tenant_a, tenant_b, plans):
    with pytest.raises(ValidationError, match="Pick a routing plan of the customer's tenant"):
        save(operator_a, tenant_a, "cross", default_plan(tenant_b), account="x")


def test_an_outsider_cannot_save_a_customer_into_tenant_a(outsider, tenant_a, plans):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        save(outsider, tenant_a, "sneaky", plans[0], account="x")
    assert not Customer.objects.filter(name="sneaky").exists()
