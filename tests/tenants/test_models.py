"""Tenants and source networks: normalised, unambiguous, never a wildcard."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tenants.models import Tenant, TenantSource

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("10.20.0.0/16", "10.20.0.0/16"),
        ("203.0.113.7", "203.0.113.7/32"),
        (" 2001:DB8:0:0::/48 ", "2001:db8::/48"),
        ("2001:db8:ffff::1", "2001:db8:ffff::1/128"),
    ],
)
def test_networks_are_stored_normalised(tenant_a, typed, stored):
    source = TenantSource(tenant=tenant_a, network=typed)
    source.full_clean()
    source.save()
    assert TenantSource.objects.get(pk=source.pk).network == stored


def test_networks_saved_without_clean_are_normalised_too(tenant_a):
    source = TenantSource.objects.create(tenant=tenant_a, network="10.1.0.0/16 ")
    assert source.network == "10.1.0.0/16"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("10.0.0.1/8", "has host bits set; did you mean 10.0.0.0/8?"),
        ("0.0.0.0/0", "matches every address"),
        ("::/0", "matches every address"),
        ("300.1.1.1", "is not an IPv4 or IPv6 network"),
        ("pbx.example.net", "is not an IPv4 or IPv6 network"),
    ],
)
def test_bad_networks_are_refused_with_a_message(tenant_a, typed, message):
    with pytest.raises(ValidationError) as info:
        TenantSource(tenant=tenant_a, network=typed).full_clean()
    assert message in str(info.value.message_dict["network"])


def test_a_network_names_one_tenant_only(tenant_a, tenant_b):
    with pytest.raises(ValidationError) as info:
        TenantSource(tenant=tenant_b, network="192.0.2.0/24").full_clean()
    assert "a network can belong to one tenant only" in str(info.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        TenantSource.objects.create(tenant=tenant_b, network="192.0.2.0/24")


def test_tenant_slugs_and_names_are_unique(tenant_a):
    with pytest.raises(ValidationError) as info:
        Tenant(slug="tenant-a", name="Other").full_clean()
    assert "A tenant with this slug already exists." in str(info.value)
    with pytest.raises(ValidationError) as info:
        Tenant(slug="other", name="Tenant A").full_clean()
    assert "A tenant with this name already exists." in str(info.value)


def test_a_tenant_with_routes_cannot_be_deleted(tenant_a, route_a):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        tenant_a.delete()
