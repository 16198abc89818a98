"""Fixtures of the rating suites: carriers, plans and customers of tenants A and B; decks."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import pytest

from rating import lookup
from rating.importing import import_deck
from routing.models import Carrier, Customer, RoutingPlan
from tests.factories import default_plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 1, tzinfo=UTC)
T2 = datetime(2027, 1, 1, tzinfo=UTC)
HEADER = "prefix,description,rate,connect_fee,initial_increment,next_increment\n"


def text(body: str):
    return lambda: io.StringIO(body)


def make_deck(owner, body: str, *, at=T0, currency="EUR", **kwargs):
    """A deck of `owner` (a Carrier, RoutingPlan or Customer) from a CSV text."""
    field = {Carrier: "carrier", RoutingPlan: "plan", Customer: "customer"}[type(owner)]
    return import_deck(text(body), effective_from=at, currency=currency, **{field: owner}, **kwargs)


@pytest.fixture
def carrier_a(trunks_a) -> Carrier:
    return trunks_a[0].carrier


@pytest.fixture
def carrier_b(trunks_b) -> Carrier:
    return trunks_b[0].carrier


@pytest.fixture
def plan_a(tenant_a) -> RoutingPlan:
    return default_plan(tenant_a)


@pytest.fixture
def premium_a(tenant_a) -> RoutingPlan:
    return RoutingPlan.objects.create(tenant=tenant_a, name="Premium")


@pytest.fixture
def customer_a(tenant_a, premium_a) -> Customer:
    """Initech, on the Premium plan of tenant A."""
    return Customer.objects.create(
        tenant=tenant_a, name="Initech", plan=premium_a, account="initech"
    )


@pytest.fixture
def plan_b(tenant_b) -> RoutingPlan:
    return default_plan(tenant_b)


@pytest.fixture(autouse=True)
def fresh_rate_store():
    """This process's rate store, built in the test's own transaction (no thread).

    A background build reads through its own connection, which cannot see the rows
    of a test that has not committed; each test also gets a store of its own.
    """
    lookup.forget_rate_stores()
    key = (os.getpid(), "default")
    lookup._stores.instances[key] = lookup.RateStore(poll_interval=0, background=False)
    yield lookup._stores.instances[key]
    lookup.forget_rate_stores()
