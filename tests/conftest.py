"""Fixtures shared by every suite.

Two tenants, A (the owner under test) and B (the outsider), each with a source
network, a carrier with two trunks and a route; an operator per tenant and a
superuser. Every suite that touches tenant data checks B's user never sees A's.
"""

from __future__ import annotations

import pytest

from blocklists.lookup import forget_block_stores
from tests.factories import make_operator, make_route, make_tenant, make_trunk
from versions.decisions import forget_decision_log


@pytest.fixture(autouse=True)
def _no_block_store_left():
    """A test that made this process's blocklist store (compiled_source) stops its poller,
    which would otherwise keep a connection to the test database open."""
    yield
    forget_block_stores()
    forget_decision_log()


@pytest.fixture
def tenant_a(db):
    return make_tenant("tenant-a", "192.0.2.0/24", "2001:db8:a::/48", name="Tenant A")


@pytest.fixture
def tenant_b(db):
    return make_tenant("tenant-b", "198.51.100.0/24", "2001:db8:b::/48", name="Tenant B")


@pytest.fixture
def trunks_a(tenant_a):
    return (
        make_trunk(tenant_a, "a-primary", carrier="Carrier A", host="192.0.2.101", port=5060),
        make_trunk(tenant_a, "a-backup", carrier="Carrier A", host="a-backup.example.net"),
    )


@pytest.fixture
def trunks_b(tenant_b):
    return (
        make_trunk(tenant_b, "b-primary", carrier="Carrier B", host="198.51.100.101"),
        make_trunk(tenant_b, "b-backup", carrier="Carrier B", host="b-backup.example.net"),
    )


@pytest.fixture
def route_a(tenant_a, trunks_a):
    return make_route(tenant_a, "33", *trunks_a, description="France via A")


@pytest.fixture
def route_b(tenant_b, trunks_b):
    return make_route(tenant_b, "33", *trunks_b, description="France via B")


@pytest.fixture
def operator_a(tenant_a):
    return make_operator("operator-a", tenant_a)


@pytest.fixture
def outsider(tenant_b):
    """An operator of tenant B: must never see or touch tenant A's rows."""
    return make_operator("outsider", tenant_b)


@pytest.fixture
def superuser(db):
    return make_operator("root", None, is_superuser=True)
