"""The route-table admin, through the real views: a tenant's operator sees and touches
only its own tenant's rows, even when it forges ids in a POST."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from ops.admin.routing import health_label
from routing import health
from routing.models import (
    Carrier,
    DialPrefix,
    RouteTarget,
    RoutingPlan,
    Trunk,
    TrunkHealth,
    TrunkHealthEvent,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def a_client(client, operator_a):
    client.force_login(operator_a)
    return client


@pytest.fixture
def outsider_client(client, outsider):
    client.force_login(outsider)
    return client


def prefix_form(tenant_id: int, prefix: str, targets: list[tuple[int, int, int]]) -> dict:
    data = {
        "tenant": tenant_id,
        "plan": RoutingPlan.objects.get(tenant_id=tenant_id, name="Default").pk,
        "prefix": prefix,
        "description": "",
        "action": "route",
        "routing_mode": "serial",
        "is_active": "on",
        "min_length": "",
        "max_length": "",
        "reject_code": "",
        "reject_reason": "",
        "strategy": "fixed",
        "targets-TOTAL_FORMS": str(len(targets)),
        "targets-INITIAL_FORMS": "0",
        "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "1000",
    }
    for n, (trunk, priority, weight) in enumerate(targets):
        data.update(
            {
                f"targets-{n}-trunk": trunk,
                f"targets-{n}-priority": priority,
                f"targets-{n}-weight": weight,
            }
        )
    return data


@pytest.mark.parametrize("model", ["carrier", "trunk", "dialprefix"])
def test_change_lists_show_only_the_users_tenant(
    outsider_client, route_a, route_b, trunks_a, trunks_b, model
):
    page = outsider_client.get(reverse(f"admin:routing_{model}_changelist"))
    assert page.status_code == 200
    content = page.content.decode()
    assert "Carrier A" not in content
    assert "a-primary" not in content
    assert "France via A" not in content
    assert "Tenant A" not in content


def test_change_lists_offer_no_filter_naming_other_tenants(outsider_client, route_a, route_b):
    page = outsider_client.get(reverse("admin:routing_dialprefix_changelist"))
    assert "By tenant" not in page.content.decode()
    assert "Tenant A" not in page.content.decode()


def test_the_owner_sees_its_rows(a_client, route_a, trunks_a):
    content = a_client.get(reverse("admin:routing_dialprefix_changelist")).content.decode()
    assert "France via A" in content
    assert 'title="a-primary → a-backup"' in content  # the route order, priority 1 then 2


@pytest.mark.parametrize(
    ("model", "fixture"),
    [("carrier", "carrier"), ("trunk", "trunk"), ("dialprefix", "route")],
)
def test_another_tenants_row_cannot_be_opened(outsider_client, route_a, trunks_a, model, fixture):
    obj = {"carrier": trunks_a[0].carrier, "trunk": trunks_a[0], "route": route_a}[fixture]
    page = outsider_client.get(reverse(f"admin:routing_{model}_change", args=[obj.pk]))
    assert page.status_code == 302  # the admin's "does not exist" redirect
    page = outsider_client.get(reverse(f"admin:routing_{model}_delete", args=[obj.pk]))
    assert page.status_code == 302


def test_another_tenants_row_cannot_be_changed_by_post(outsider_client, trunks_a):
    carrier = trunks_a[0].carrier
    outsider_client.post(
        reverse("admin:routing_carrier_change", args=[carrier.pk]),
        {"name": "hijacked", "is_active": "", "tenant": carrier.tenant_id},
    )
    carrier.refresh_from_db()
    assert (carrier.name, carrier.is_active) == ("Carrier A", True)


def test_a_forged_trunk_id_from_another_tenant_is_refused(outsider_client, tenant_b, trunks_a):
    response = outsider_client.post(
        reverse("admin:routing_dialprefix_add"),
        prefix_form(tenant_b.pk, "49", [(trunks_a[0].pk, 1, 100)]),
    )
    assert response.status_code == 200  # the form again, with its error
    assert "Select a valid choice" in response.content.decode()
    assert not DialPrefix.objects.filter(prefix="49").exists()
    assert not RouteTarget.objects.filter(trunk=trunks_a[0]).exists()


def test_a_forged_tenant_id_is_ignored(outsider_client, tenant_a, tenant_b):
    response = outsider_client.post(
        reverse("admin:routing_carrier_add"),
        {
            "tenant": tenant_a.pk,
            "name": "Sneaky",
            "is_active": "on",
            "description": "",
            "trunks-TOTAL_FORMS": "0",
            "trunks-INITIAL_FORMS": "0",
            "trunks-MIN_NUM_FORMS": "0",
            "trunks-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302
    assert Carrier.objects.get(name="Sneaky").tenant == tenant_b


def test_an_operator_creates_a_route_with_targets_in_its_tenant(a_client, tenant_a, trunks_a):
    response = a_client.post(
        reverse("admin:routing_dialprefix_add"),
        prefix_form(tenant_a.pk, "44", [(trunks_a[0].pk, 1, 70), (trunks_a[1].pk, 1, 30)]),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    route = DialPrefix.objects.get(prefix="44")
    assert route.tenant == tenant_a
    assert sorted(route.targets.values_list("weight", flat=True)) == [30, 70]


def test_a_duplicate_prefix_is_a_form_error_not_a_crash(a_client, tenant_a, route_a):
    response = a_client.post(
        reverse("admin:routing_dialprefix_add"), prefix_form(tenant_a.pk, "33", [])
    )
    assert response.status_code == 200
    assert "already has an unscheduled route for this prefix and caller prefix" in (
        response.content.decode()
    )


def test_trunk_autocomplete_lists_only_the_users_trunks(outsider_client, trunks_a, trunks_b):
    response = outsider_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "routing", "model_name": "routetarget", "field_name": "trunk", "term": ""},
    )
    assert response.status_code == 200
    names = [item["text"] for item in response.json()["results"]]
    assert sorted(names) == ["Carrier B / b-backup", "Carrier B / b-primary"]


def test_carrier_choices_of_a_trunk_are_scoped(outsider_client, trunks_a, trunks_b):
    response = outsider_client.post(
        reverse("admin:routing_trunk_add"),
        {"carrier": trunks_a[0].carrier_id, "name": "x", "host": "x.example", "transport": "udp"},
    )
    assert response.status_code == 200
    assert not Trunk.objects.filter(name="x").exists()


def test_bulk_disable_touches_only_the_users_rows(outsider_client, route_a, route_b):
    outsider_client.post(
        reverse("admin:routing_dialprefix_changelist"),
        {"action": "disable_selected", "_selected_action": [route_a.pk, route_b.pk]},
    )
    route_a.refresh_from_db()
    route_b.refresh_from_db()
    assert (route_a.is_active, route_b.is_active) == (True, False)


def test_a_superuser_sees_every_tenant(client, superuser, route_a, route_b):
    client.force_login(superuser)
    content = client.get(reverse("admin:routing_dialprefix_changelist")).content.decode()
    assert "France via A" in content
    assert "France via B" in content
    assert "By tenant" in content


def test_a_superuser_cannot_mix_tenants_in_a_route(client, superuser, tenant_a, trunks_b):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:routing_dialprefix_add"),
        prefix_form(tenant_a.pk, "49", [(trunks_b[0].pk, 1, 100)]),
    )
    assert response.status_code == 200
    assert "belongs to another tenant" in response.content.decode()
    assert not DialPrefix.objects.filter(prefix="49").exists()


def trunk_form(trunk: Trunk, **changes: str) -> dict:
    data = {
        "carrier": trunk.carrier_id,
        "name": trunk.name,
        "host": trunk.host,
        "port": trunk.port or "",
        "transport": trunk.transport,
        "is_active": "on",
        "tech_prefix": "",
        "strip_digits": 0,
        "from_display": "",
        "from_uri": "",
        "outbound_proxy": "",
        "socket": "",
        "path": "",
        "extra_headers": "",
        "branch_flags": "",
        "fr_timer": "",
        "fr_inv_timer": "",
        "max_calls": "",
        "max_cps": "",
        "health_window": trunk.health_window,
        "health_min_attempts": trunk.health_min_attempts,
        "health_failure_ratio": trunk.health_failure_ratio or "",
        "health_consecutive_failures": trunk.health_consecutive_failures or "",
        "health_cooldown": trunk.health_cooldown,
    }
    return {**data, **changes}


def test_a_from_uri_that_is_not_a_sip_uri_is_a_form_error(a_client, trunks_a):
    trunk = trunks_a[0]
    url = reverse("admin:routing_trunk_change", args=[trunk.pk])

    bad = a_client.post(url, trunk_form(trunk, from_uri="alice@x"))
    good = a_client.post(url, trunk_form(trunk, from_uri="sip:{caller}@trunk.example.net"))

    assert bad.status_code == 200  # the form again, with its error
    assert "alice@x is not a valid From URI: it must start with sip: or sips:" in (
        bad.content.decode()
    )
    assert good.status_code == 302
    trunk.refresh_from_db()
    assert trunk.from_uri == "sip:{caller}@trunk.example.net"


def test_a_targets_trunk_offers_no_link_to_change_or_delete_the_trunk(a_client, route_a):
    html = a_client.get(reverse("admin:routing_dialprefix_change", args=[route_a.pk])).content
    html = html.decode()

    # The row's own "Delete?" box removes a target; a red cross beside the trunk
    # deleted the trunk itself, for every route.
    for row in ["0", "1", "__prefix__"]:
        assert f'id="delete_id_targets-{row}-trunk"' not in html
        assert f'id="change_id_targets-{row}-trunk"' not in html
        assert f'id="view_id_targets-{row}-trunk"' not in html
        assert f'id="add_id_targets-{row}-trunk"' in html
    assert "delete-related" not in html
    assert 'name="targets-0-DELETE"' in html


def test_saving_a_route_warns_about_a_trunk_that_strips_too_much(a_client, tenant_a, trunks_a):
    trunks_a[0].strip_digits = 3
    trunks_a[0].save()
    response = a_client.post(
        reverse("admin:routing_dialprefix_add"),
        prefix_form(tenant_a.pk, "33", [(trunks_a[0].pk, 1, 100)]),
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("a-primary strips 3 digits" in m for m in messages), messages
    assert DialPrefix.objects.get(tenant=tenant_a, prefix="33").targets.count() == 1


def test_an_operator_sets_a_least_cost_route_with_its_margin(a_client, tenant_a, trunks_a):
    data = prefix_form(tenant_a.pk, "44", [(trunks_a[0].pk, 1, 100)])
    data.update(strategy="lcr", margin_percent="12.5", max_cost="0.02", lcr_code="403")
    response = a_client.post(reverse("admin:routing_dialprefix_add"), data)
    assert response.status_code == 302, response.context["adminform"].errors
    route = DialPrefix.objects.get(tenant=tenant_a, prefix="44")
    assert (route.strategy, str(route.margin_percent), str(route.max_cost), route.lcr_code) == (
        "lcr",
        "12.50",
        "0.020000",
        403,
    )
    data.update(prefix="45", margin_percent="-1")
    refused = a_client.post(reverse("admin:routing_dialprefix_add"), data)
    assert "Ensure this value is greater than or equal to 0." in refused.content.decode()


# --- Trunk health: the column, the current state and history, the override buttons -------


def test_the_trunk_list_shows_each_trunks_health(a_client, trunks_a, operator_a):
    health.override(trunks_a[1], "down", operator_a)
    page = a_client.get(reverse("admin:routing_trunk_changelist")).content.decode()
    assert "Healthy" in page
    assert "Forced down" in page


def test_an_unhealthy_trunk_shows_until_when_then_half_open(trunks_a):
    now = timezone.now()
    row = TrunkHealth(
        trunk=trunks_a[0], state="unhealthy", since=now, until=now + dt.timedelta(seconds=60)
    )
    assert health_label(row) == f"Unhealthy until {timezone.localtime(row.until):%H:%M}"
    row.until = now - dt.timedelta(seconds=1)
    assert health_label(row) == "Half-open"
    row.override = "up"
    assert health_label(row) == "Forced up"
    assert health_label(None) == "Healthy"


def test_the_change_form_has_capacity_health_and_the_override_buttons(a_client, trunks_a):
    page = a_client.get(reverse("admin:routing_trunk_change", args=[trunks_a[0].pk]))
    html = page.content.decode()
    for text in ("Capacity", "Health", "Current health", "Force out of service", "max_cps"):
        assert text in html
    action = reverse("admin:routing_trunk_health", args=[trunks_a[0].pk])
    assert f'<form id="trunk-health" method="post" action="{action}">' in html
    assert 'form="trunk-health" name="health_mode" value="down"' in html
    assert "No change yet" in html


def test_an_operator_forces_a_trunk_out_and_back_with_history(a_client, trunks_a, operator_a):
    trunk = trunks_a[0]
    url = reverse("admin:routing_trunk_health", args=[trunk.pk])
    response = a_client.post(url, {"health_mode": "down", "health_reason": "maintenance"})
    assert response.status_code == 302
    assert TrunkHealth.objects.get(trunk=trunk).override == "down"
    a_client.post(url, {"health_mode": "auto"})
    assert TrunkHealth.objects.get(trunk=trunk).override == "auto"
    events = list(TrunkHealthEvent.objects.filter(trunk=trunk))  # newest first
    assert [(e.override, e.user) for e in events] == [("auto", operator_a), ("down", operator_a)]
    assert events[1].reason == "forced out of service: maintenance"
    html = a_client.get(reverse("admin:routing_trunk_change", args=[trunk.pk])).content.decode()
    assert html.index("back to automatic") < html.index("forced out of service: maintenance")


def test_an_outsider_can_neither_see_nor_override_a_trunks_health(
    outsider_client, trunks_a, operator_a
):
    trunk = trunks_a[0]
    health.override(trunk, "down", operator_a, "secret maintenance")
    listing = outsider_client.get(reverse("admin:routing_trunk_changelist")).content.decode()
    assert "Forced down" not in listing
    page = outsider_client.get(reverse("admin:routing_trunk_change", args=[trunk.pk]))
    assert page.status_code == 302  # the admin's "does not exist" redirect
    assert "secret maintenance" not in page.content.decode()
    response = outsider_client.post(
        reverse("admin:routing_trunk_health", args=[trunk.pk]), {"health_mode": "up"}
    )
    assert response.status_code == 404
    assert TrunkHealth.objects.get(trunk=trunk).override == "down"
    assert TrunkHealthEvent.objects.filter(trunk=trunk).count() == 1
