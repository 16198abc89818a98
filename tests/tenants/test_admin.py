"""Tenants and source networks in the admin: operators look, superusers edit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tenants.models import TenantSource

pytestmark = pytest.mark.django_db


def test_an_operator_sees_only_its_own_tenant(client, outsider, tenant_a, tenant_b):
    client.force_login(outsider)
    content = client.get(reverse("admin:tenants_tenant_changelist")).content.decode()
    assert "Tenant B" in content
    assert "Tenant A" not in content
    page = client.get(reverse("admin:tenants_tenant_change", args=[tenant_a.pk]))
    assert page.status_code == 302


def test_an_operator_cannot_add_source_networks(client, outsider, tenant_b):
    client.force_login(outsider)
    page = client.get(reverse("admin:tenants_tenantsource_add"))
    assert page.status_code == 403
    client.post(
        reverse("admin:tenants_tenantsource_add"), {"tenant": tenant_b.pk, "network": "0.0.0.0/1"}
    )
    assert not TenantSource.objects.filter(network="0.0.0.0/1").exists()


def test_an_operator_sees_its_sources_but_not_others(client, outsider, tenant_a, tenant_b):
    client.force_login(outsider)
    content = client.get(reverse("admin:tenants_tenantsource_changelist")).content.decode()
    assert "198.51.100.0/24" in content
    assert "192.0.2.0/24" not in content


def test_operators_cannot_manage_users(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse("admin:tenants_user_changelist")).status_code == 403


def test_a_superuser_adds_a_source_network(client, superuser, tenant_a):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:tenants_tenantsource_add"),
        {"tenant": tenant_a.pk, "network": "203.0.113.0/24", "description": "SBC"},
    )
    assert response.status_code == 302
    response = client.post(
        reverse("admin:tenants_tenantsource_add"),
        {"tenant": tenant_a.pk, "network": "203.0.113.1/24"},
    )
    assert "did you mean 203.0.113.0/24?" in response.content.decode()
