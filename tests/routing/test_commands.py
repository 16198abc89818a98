"""seed_demo and route, run as an operator would run them."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from routing.models import DialPrefix, RoutingPlan
from tenants.models import Tenant, User

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_routes_demo_calls(capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    assert Tenant.objects.count() == 2
    assert DialPrefix.objects.filter(tenant__slug="acme").count() == 7
    assert RoutingPlan.objects.filter(tenant__slug="globex").count() == 2
    assert User.objects.get(username="acme-operator").tenant.slug == "acme"
    assert User.objects.get(username="admin").is_superuser
    capsys.readouterr()
    call_command("route", "--source-ip", "192.0.2.7", "--callee", "+33612345678", "--json")
    document = json.loads(capsys.readouterr().out)
    summary = (document["tenant"], document["prefix"], document["routing"])
    assert summary == ("acme", "336", "serial")
    assert len(document["routes"]) == 3
    assert (document["customer"], document["plan"]) == ("Default", "Default")


@pytest.mark.parametrize(
    ("port", "callee", "customer", "plan", "first_trunk"),
    [
        ("5060", "+4930123456", "Initech", "Premium", "hb-1"),  # its PBX's address and port
        ("5070", "+4930123456", "Walk-in", "Standard", "mer-a"),  # same address, other port
        ("5070", "4711#4930123456", "Umbrella", "Standard", "mer-a"),  # its tech prefix
    ],
)
def test_demo_customers_share_a_carrier_on_different_plans(
    capsys, port, callee, customer, plan, first_trunk
):
    call_command("seed_demo")
    capsys.readouterr()
    call_command(
        "route", "--source-ip", "198.51.100.7", "--source-port", port,
        "--callee", callee, "--call-id", "x", "--json",
    )  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    assert (document["customer"], document["plan"]) == (customer, plan)
    assert document["routes"][0]["trunk"] == first_trunk
    assert "4930123456@" in document["routes"][0]["uri"]  # the tech prefix is gone


def test_route_explains_a_refused_call_and_exits_1(capsys, tenant_a, route_a):
    with pytest.raises(SystemExit) as exit_info:
        call_command("route", "--source-ip", "203.0.113.1", "--callee", "+33123")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "forbidden: 403 Forbidden" in out
    assert "is in no tenant's networks" in out


def test_route_prints_the_trace_and_routes(capsys, tenant_a, route_a):
    call_command("route", "--tenant", "tenant-a", "--caller", "100", "--callee", "+33 1 23")
    out = capsys.readouterr().out
    assert "routed: 200 OK" in out
    assert "1. Carrier A/a-primary: sip:+33123@192.0.2.101:5060" in out


def test_route_needs_a_source_or_a_tenant():
    with pytest.raises(CommandError, match="Give --source-ip or --tenant"):
        call_command("route", "--callee", "+33123")


@pytest.mark.parametrize(
    ("callee", "trunks", "skipped"),
    [
        # UK fixed: Meridian 0.012 first; Harbor 0.024 is above Premium's 0.020 less 10%.
        ("+442071234567", ["mer-a"], "Harbor Networks/hb-1: rate 0.024000 EUR is above"),
        # UK mobile: Harbor 0.015 first, Meridian 0.025 (under 0.030 less 10%) second.
        ("+447700900123", ["hb-1", "mer-a"], None),
    ],
)
def test_demo_premium_routes_the_uk_by_least_cost(capsys, callee, trunks, skipped):
    call_command("seed_demo")
    call_command("seed_demo")  # decks are not added twice
    capsys.readouterr()
    call_command(
        "route", "--source-ip", "198.51.100.7", "--source-port", "5060", "--callee", callee,
    )  # fmt: skip
    out = capsys.readouterr().out
    document = json.loads(out[out.index("{") :])
    assert [route["trunk"] for route in document["routes"]] == trunks
    assert all(route["currency"] == "EUR" for route in document["routes"])
    if skipped:
        assert f"skipped {skipped}" in out
