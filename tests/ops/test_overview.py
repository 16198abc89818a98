"""The superusers' overview of every tenant, and nobody else's."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from ops.overview import tenant_rows
from routing.models import HealthOverride, TrunkHealth
from tests.factories import make_bucket

URL = "/admin/overview/"


def test_it_counts_each_tenant_and_names_its_trunks_out_of_service(
    superuser, tenant_a, tenant_b, trunks_a, route_a, route_b
):
    primary, _ = trunks_a
    TrunkHealth.objects.create(trunk=primary, override=HealthOverride.DOWN, since=timezone.now())
    make_bucket(tenant_a, primary, timezone.now() - dt.timedelta(minutes=5), codes={200: 3, 503: 1})
    make_bucket(tenant_a, primary, timezone.now() - dt.timedelta(days=2), codes={200: 50})

    rows = {row.tenant.slug: row for row in tenant_rows(user=superuser)}

    a, b = rows["tenant-a"], rows["tenant-b"]
    assert (a.customers, a.plans, a.prefixes, a.trunks) == (1, 1, 1, 2)
    assert a.trunks_off == ["Carrier A / a-primary (forced out of service)"]
    assert (a.attempts, a.answered) == (4, 3)  # the last 24 hours only
    assert b.trunks_off == []
    assert b.attempts == 0
    assert a.last_change is not None


def test_the_page_is_for_superusers(client, superuser, route_a, route_b):
    client.force_login(superuser)

    html = client.get(URL).content.decode()

    assert 'id="overview-tenant-a"' in html
    assert 'id="overview-tenant-b"' in html


@pytest.mark.parametrize("who", ["operator_a", "outsider"])
def test_operators_of_a_tenant_are_refused(client, request, who, route_a, route_b):
    client.force_login(request.getfixturevalue(who))

    response = client.get(URL)

    assert response.status_code == 403
    assert "Tenant A" not in response.content.decode()


@pytest.mark.parametrize("page", ["/admin/", "/admin/routing/carrier/"])
def test_the_index_and_side_menu_link_it_for_superusers_only(client, superuser, operator_a, page):
    client.force_login(superuser)
    assert 'href="/admin/overview/"' in client.get(page).content.decode()
    client.force_login(operator_a)
    html = client.get(page).content.decode()
    assert 'href="/admin/overview/"' not in html
    for link in ("/admin/number/", "/admin/simulator/", "/admin/recent-changes/"):
        assert f'href="{link}"' in html  # the Operations links, for everyone
