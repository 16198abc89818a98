"""Tenant isolation through every resource: tenant B's operator never reaches A's rows."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api.models import issue_user_token
from routing.models import Carrier, Customer, DialPrefix, Trunk
from tenants.models import Tenant, TenantSource

pytestmark = pytest.mark.django_db


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_user_token(user=user)[0]}")
    return client


@pytest.fixture
def rows_a(tenant_a, route_a, trunks_a) -> dict:
    """One row of tenant A per resource, and a valid change for each."""
    return {
        "tenants": (tenant_a, {"description": "hijacked"}),
        "tenant-sources": (tenant_a.sources.first(), {"description": "hijacked"}),
        "carriers": (trunks_a[0].carrier, {"name": "hijacked"}),
        "trunks": (trunks_a[0], {"host": "evil.example.net"}),
        "prefixes": (route_a, {"description": "hijacked"}),
        "routing-plans": (route_a.plan, {"name": "hijacked"}),
        "customers": (Customer.objects.get(tenant=tenant_a), {"name": "hijacked"}),
    }


@pytest.fixture
def b_world(route_b, outsider) -> APIClient:
    return api_as(outsider)


RESOURCES = [
    "tenants",
    "tenant-sources",
    "carriers",
    "trunks",
    "prefixes",
    "routing-plans",
    "customers",
]


@pytest.mark.parametrize("resource", RESOURCES)
def test_the_outsider_lists_only_tenant_b_rows(b_world, rows_a, resource):
    row, _ = rows_a[resource]

    listed = b_world.get(f"/api/v1/{resource}", {"page_size": 1000}).json()["results"]

    assert listed, "B's own rows are listed"
    assert row.pk not in {item["id"] for item in listed}
    assert all(item.get("tenant", "tenant-b") == "tenant-b" for item in listed)


@pytest.mark.parametrize("resource", RESOURCES)
def test_the_outsider_cannot_read_change_or_delete_a_rows(b_world, rows_a, resource):
    row, change = rows_a[resource]
    url = f"/api/v1/{resource}/{row.pk}"

    answers = [
        b_world.get(url).status_code,
        b_world.patch(url, change, format="json").status_code,
        b_world.put(url, change, format="json").status_code,
        b_world.delete(url).status_code,
    ]

    assert answers == [404, 404, 404, 404] or (
        # tenants and sources are read-only for tenant users: refused before lookup
        resource in ("tenants", "tenant-sources") and answers == [404, 403, 403, 403]
    )
    row.refresh_from_db()
    assert "hijacked" not in str(vars(row))
    assert getattr(row, "host", "") != "evil.example.net"


def test_the_outsider_cannot_filter_their_way_to_a_rows(b_world, rows_a):
    for resource in (
        "tenant-sources",
        "carriers",
        "trunks",
        "prefixes",
        "routing-plans",
        "customers",
    ):
        listed = b_world.get(f"/api/v1/{resource}", {"tenant": "tenant-a"}).json()

        assert listed["count"] == 0, resource


def test_the_outsider_cannot_reference_a_trunk_in_targets(b_world, rows_a, trunks_a):
    body = {"prefix": "49", "targets": [{"trunk": trunks_a[0].pk}]}

    response = b_world.post("/api/v1/prefixes", body, format="json")

    assert response.status_code == 400
    assert response.json()["targets"]["0"]["trunk"] == [
        f'Invalid pk "{trunks_a[0].pk}" - object does not exist.'
    ]
    assert not DialPrefix.objects.filter(prefix="49").exists()


def test_the_outsider_cannot_put_a_trunk_under_a_carrier(b_world, rows_a, trunks_a):
    carrier = trunks_a[0].carrier
    body = {"carrier": carrier.pk, "name": "sneaky", "host": "sneaky.example.net"}

    response = b_world.post("/api/v1/trunks", body, format="json")

    assert response.status_code == 400
    assert response.json()["carrier"] == [f'Invalid pk "{carrier.pk}" - object does not exist.']
    assert not Trunk.objects.filter(name="sneaky").exists()


def test_the_outsider_cannot_move_b_rows_onto_a_rows(b_world, rows_a, trunks_b, trunks_a):
    url = f"/api/v1/trunks/{trunks_b[0].pk}"

    response = b_world.patch(url, {"carrier": trunks_a[0].carrier_id}, format="json")

    assert response.status_code == 400
    assert Trunk.objects.get(pk=trunks_b[0].pk).carrier.tenant.slug == "tenant-b"


def test_the_outsider_cannot_create_rows_in_tenant_a(b_world, rows_a):
    carrier = b_world.post("/api/v1/carriers", {"tenant": "tenant-a", "name": "X"}, format="json")
    source = b_world.post(
        "/api/v1/tenant-sources", {"tenant": "tenant-a", "network": "10.0.0.0/8"}, format="json"
    )

    assert Carrier.objects.get(name="X").tenant.slug == "tenant-b"
    assert carrier.json()["tenant"] == "tenant-b"
    assert source.status_code == 403
    assert not TenantSource.objects.filter(network="10.0.0.0/8").exists()


def test_a_superuser_reaches_every_tenant(superuser, rows_a, route_b):
    root = api_as(superuser)

    for resource, (row, change) in rows_a.items():
        url = f"/api/v1/{resource}/{row.pk}"
        assert root.get(url).status_code == 200, resource
        assert root.patch(url, change, format="json").status_code == 200, resource
    tenants = root.get("/api/v1/tenants").json()["results"]

    assert {t["slug"] for t in tenants} == {"tenant-a", "tenant-b"}
    assert Tenant.objects.get(slug="tenant-a").description == "hijacked"


def test_the_outsider_cannot_put_a_customer_or_route_on_a_plan_of_a(b_world, rows_a, route_a):
    plan = route_a.plan_id
    customer = b_world.post(
        "/api/v1/customers", {"name": "Sneaky", "plan": plan, "account": "x"}, format="json"
    )
    route = b_world.post("/api/v1/prefixes", {"prefix": "49", "plan": plan}, format="json")
    for response in (customer, route):
        assert response.status_code == 400
        assert "plan" in response.json()
        assert "Invalid pk" in str(response.json()["plan"])  # as for a plan that does not exist
    assert not Customer.objects.filter(name="Sneaky").exists()
