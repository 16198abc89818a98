"""Fixtures of the blocklist suites: lists of tenants A and B, filled from text."""

from __future__ import annotations

import io
import os

import pytest

from blocklists import lookup
from blocklists.importing import import_entries
from blocklists.models import Blocklist
from routing.models import Customer, RoutingPlan
from tests.factories import default_plan


def make_list(tenant, name: str, kind: str, body: str = "", **fields) -> Blocklist:
    """A list of `tenant` with the entries of `body` (the import format)."""
    blocklist = Blocklist.objects.create(tenant=tenant, name=name, kind=kind, **fields)
    if body:
        import_entries(lambda: io.StringIO(body), blocklist=blocklist)
    blocklist.refresh_from_db()
    return blocklist


@pytest.fixture
def initech(tenant_a) -> Customer:
    """A customer of tenant A recognised by its account."""
    premium = RoutingPlan.objects.create(tenant=tenant_a, name="Premium")
    return Customer.objects.create(tenant=tenant_a, name="Initech", plan=premium, account="initech")


@pytest.fixture
def default_customer_a(tenant_a) -> Customer:
    return Customer.objects.get(tenant=tenant_a, is_default=True)


@pytest.fixture
def plan_a(tenant_a) -> RoutingPlan:
    return default_plan(tenant_a)


@pytest.fixture(autouse=True)
def fresh_block_store():
    """This process's store, built in the test's own transaction (no thread)."""
    lookup.forget_block_stores()
    key = (os.getpid(), "default")
    lookup._stores.instances[key] = lookup.BlockStore(poll_interval=0, background=False)
    yield lookup._stores.instances[key]
    lookup.forget_block_stores()
