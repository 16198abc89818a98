"""Change history: who changed what and when, per object and tenant-wide, never across tenants."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ops.history import kinds_choices
from routing.models import Carrier, ImportRecord, RouteTarget, Trunk
from tenants.models import TenantSource
from tests.factories import make_route, make_trunk

CHANGES = "/admin/recent-changes/"


def history_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[obj.pk])


def version_url(obj, version) -> str:
    opts = obj._meta
    return reverse(
        f"admin:{opts.app_label}_{opts.model_name}_simple_history", args=[obj.pk, version.pk]
    )


def form_data(form) -> dict:
    """What the browser would post back for an unchanged admin form."""
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is True:
            data[name] = "on"
        elif value is not None and value is not False:
            data[name] = value
    return data


def edit_trunk_as(client, user, trunk: Trunk, **changes) -> None:
    client.force_login(user)
    url = reverse("admin:routing_trunk_change", args=[trunk.pk])
    data = {**form_data(client.get(url).context["adminform"].form), **changes}
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors


def delete_as(client, user, obj) -> None:
    client.force_login(user)
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[obj.pk])
    assert client.post(url, {"post": "yes"}).status_code == 302


def test_an_objects_history_says_who_changed_which_field_when(client, operator_a, trunks_a):
    trunk = trunks_a[0]
    edit_trunk_as(client, operator_a, trunk, host="sbc.carrier-a.example.net")

    response = client.get(history_url(trunk))

    assert response.status_code == 200
    html = response.content.decode()
    assert "operator-a" in html
    assert "192.0.2.101" in html
    assert "sbc.carrier-a.example.net" in html
    latest = trunk.history.first()
    assert latest.history_user == operator_a
    assert latest.history_type == "~"


def test_an_outsider_cannot_open_the_history_of_a_live_object(client, outsider, trunks_a):
    client.force_login(outsider)
    carrier = trunks_a[0].carrier

    assert client.get(history_url(carrier)).status_code == 404
    assert client.get(history_url(trunks_a[0])).status_code == 404
    assert client.get(history_url(carrier.tenant)).status_code == 404


def test_an_outsider_cannot_open_the_history_of_a_deleted_object(
    client, operator_a, outsider, trunks_a
):
    trunk = trunks_a[1]
    delete_as(client, operator_a, trunk)
    assert not Trunk.objects.filter(pk=trunk.pk).exists()

    assert client.get(history_url(trunk)).status_code == 200  # still operator A
    client.force_login(outsider)
    response = client.get(history_url(trunk))

    assert response.status_code == 404
    assert "a-backup" not in response.content.decode()


def test_the_history_of_a_trunk_survives_the_deletion_of_its_carrier(
    client, operator_a, outsider, superuser, tenant_a, tenant_b
):
    trunk = make_trunk(tenant_a, "short-lived", carrier="Gone Carrier")
    delete_as(client, operator_a, trunk.carrier)

    for user, status in ((operator_a, 200), (superuser, 200), (outsider, 404)):
        client.force_login(user)
        assert client.get(history_url(trunk)).status_code == status, user
        assert client.get(history_url(trunk.carrier)).status_code == status, user


def test_an_outsider_can_neither_view_nor_revert_a_historical_version(
    client, operator_a, outsider, trunks_a
):
    trunk = trunks_a[0]
    edit_trunk_as(client, operator_a, trunk, host="new.example.net")
    first = trunk.history.earliest()

    client.force_login(outsider)
    assert client.get(version_url(trunk, first)).status_code == 404
    response = client.post(version_url(trunk, first), {"name": "hijacked", "host": "evil.example"})

    assert response.status_code == 404
    trunk.refresh_from_db()
    assert trunk.host == "new.example.net"
    client.force_login(operator_a)
    assert client.get(version_url(trunk, first)).status_code == 200


def test_a_version_of_another_object_cannot_be_borrowed(client, outsider, trunks_a, trunks_b):
    # B's trunk id with A's version id: the pair does not exist, whatever the ids
    version_of_a = trunks_a[0].history.earliest()
    client.force_login(outsider)

    assert client.get(version_url(trunks_b[0], version_of_a)).status_code == 404


@pytest.mark.parametrize("object_id", ["abc", "1'"])
def test_a_malformed_id_is_a_404_not_a_500(client, superuser, object_id):
    client.force_login(superuser)

    response = client.get(f"/admin/routing/carrier/{object_id}/history/")

    assert response.status_code == 404


def test_recent_changes_lists_the_tenants_changes_with_diffs_and_deletions(
    client, operator_a, outsider, trunks_a, trunks_b
):
    edit_trunk_as(client, operator_a, trunks_a[0], host="sbc.carrier-a.example.net")
    delete_as(client, operator_a, trunks_a[1])
    client.force_login(operator_a)

    response = client.get(CHANGES)

    html = response.content.decode()
    actions = [(c.kind, c.label, c.action, c.who) for c in response.context["changes"]]
    assert actions[0] == ("trunk", "Carrier A / a-backup", "deleted", "operator-a")
    assert actions[1] == ("trunk", "Carrier A / a-primary", "changed", "operator-a")
    assert "sbc.carrier-a.example.net" in html
    assert ("carrier", "Carrier A", "created", "(system)") in actions
    for secret in ("Carrier B", "b-primary", "b-backup", "Tenant B", "198.51.100"):
        assert secret not in html


def test_an_outsider_never_sees_another_tenants_deleted_objects_in_recent_changes(
    client, operator_a, outsider, trunks_a, trunks_b
):
    delete_as(client, operator_a, trunks_a[0].carrier)
    client = Client()  # a fresh browser: no message left over from operator A's session
    client.force_login(outsider)

    response = client.get(CHANGES)

    html = response.content.decode()
    assert "Carrier B" in html
    for secret in ("Carrier A", "a-primary", "a-backup", "Tenant A", "operator-a"):
        assert secret not in html
    # asking for tenant A explicitly changes nothing for a tenant user
    assert "Carrier A" not in client.get(CHANGES, {"tenant": "tenant-a"}).content.decode()


def test_a_superuser_sees_every_tenant_and_can_filter_by_tenant_and_kind(
    client, superuser, trunks_a, trunks_b
):
    client.force_login(superuser)

    everything = client.get(CHANGES).context["changes"]
    only_a = client.get(CHANGES, {"tenant": "tenant-a"}).context["changes"]
    only_carriers = client.get(CHANGES, {"kind": "carrier"}).context["changes"]

    assert {c.tenant_name for c in everything} == {"Tenant A", "Tenant B"}
    assert {c.tenant_name for c in only_a} == {"Tenant A"}
    assert {c.label for c in only_carriers} == {"Carrier A", "Carrier B"}


def test_recent_changes_pages_through_older_changes(client, superuser, tenant_a):
    for number in range(60):
        Carrier.objects.create(tenant=tenant_a, name=f"carrier {number:02}")
    client.force_login(superuser)

    first = client.get(CHANGES)
    second = client.get(CHANGES, {"page": "2"})

    assert len(first.context["changes"]) == 50
    assert first.context["has_next"]
    assert first.context["changes"][0].label == "carrier 59"
    labels = {c.label for c in second.context["changes"]}
    assert "carrier 00" in labels
    assert not labels & {c.label for c in first.context["changes"]}
    assert client.get(CHANGES, {"page": "x"}).status_code == 200


def test_an_import_is_one_entry_with_its_row_counts_for_its_tenant_only(
    client, operator_a, outsider, tenant_a, tenant_b
):
    ImportRecord.objects.create(
        tenant=tenant_a,
        user=operator_a,
        source="france.csv",
        rows=120,
        created=100,
        updated=15,
        deleted=5,
        targets=230,
        seconds=0.4,
    )
    client.force_login(operator_a)

    response = client.get(CHANGES, {"kind": "import"})

    (entry,) = response.context["changes"]
    assert (entry.kind, entry.label, entry.who) == ("import", "france.csv", "operator-a")
    html = response.content.decode()
    assert "Prefixes added</strong>: 100" in html
    assert "Targets written</strong>: 230" in html
    other = Client()
    other.force_login(outsider)
    assert "france.csv" not in other.get(CHANGES).content.decode()


def test_one_routes_changes_cover_its_prefix_and_targets_only(
    client, operator_a, outsider, tenant_a, trunks_a, route_a
):
    make_route(tenant_a, "44", trunks_a[0])
    target = route_a.targets.get(trunk=trunks_a[1])
    target.weight = 30
    target.save()
    client.force_login(operator_a)

    prefix_page = client.get(reverse("admin:routing_dialprefix_change", args=[route_a.pk]))
    assert f"{CHANGES}?prefix={route_a.pk}" in prefix_page.content.decode()
    response = client.get(CHANGES, {"prefix": route_a.pk})

    changes = response.context["changes"]
    assert {c.kind for c in changes} == {"dial prefix", "route target"}
    assert "Carrier A / a-backup" in changes[0].label
    assert changes[0].changes[0]["old"] == "100"
    assert changes[0].changes[0]["new"] == "30"
    assert all(c.label.startswith("33") for c in changes)  # nothing of route 44
    other_client = Client()
    other_client.force_login(outsider)
    assert other_client.get(CHANGES, {"prefix": route_a.pk}).context["changes"] == []


# --- Deleted objects and their children ------------------------------------------------


def edit_as(client, user, obj, **changes) -> None:
    client.force_login(user)
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    page = client.get(url)
    data = {**form_data(page.context["adminform"].form), **changes}
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({management.add_prefix(k): v for k, v in form_data(management).items()})
        for form in formset.formset.forms:
            data.update({form.add_prefix(k): v for k, v in form_data(form).items()})
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors


@pytest.fixture
def gone(client, operator_a, tenant_a):
    """A carrier, its trunks and a route of tenant A: changed, then all deleted via the admin.

    The route's target first pointed at bl-west, then at bl-east (a change of a foreign key
    to a trunk whose carrier is gone too); PROTECT makes the order route, trunks, carrier.
    """
    east = make_trunk(tenant_a, "bl-east", carrier="Blue Line")
    west = make_trunk(tenant_a, "bl-west", carrier="Blue Line")
    route = make_route(tenant_a, "4420", west, description="London via Blue Line")
    target = route.targets.get()
    carrier = east.carrier
    edit_as(client, operator_a, carrier, description="Blue Line Telecom, account 42")
    edit_trunk_as(client, operator_a, east, host="sbc.blue-line.example.net")
    edit_as(client, operator_a, route, description="London")
    target.trunk = east
    target.weight = 30
    target.save()
    delete_as(client, operator_a, route)
    delete_as(client, operator_a, east)
    delete_as(client, operator_a, west)
    delete_as(client, operator_a, carrier)
    assert not Carrier.objects.filter(pk=carrier.pk).exists()
    return {"carrier": carrier, "trunk": east, "prefix": route, "target": target}


def object_history_pages(objects) -> list[str]:
    """The admin's history pages of these objects: each one's list and each of its versions.

    A route target has none of its own (no admin of its own): its changes are on the
    recent-changes pages below.
    """
    urls = []
    for obj in objects:
        if admin.site.is_registered(type(obj)):
            urls.append(history_url(obj))
            urls.extend(version_url(obj, version) for version in obj.history.all())
    return urls


def change_pages(prefix) -> list[str]:
    """The recent-changes page: everything, by each kind, and one route's changes."""
    kinds = [f"{CHANGES}?kind={kind}" for kind, _ in kinds_choices()]
    return [CHANGES, *kinds, f"{CHANGES}?tenant=tenant-a", f"{CHANGES}?prefix={prefix.pk}"]


GONE_NAMES = ("Blue Line", "bl-east", "bl-west", "4420", "London")


def test_every_history_page_of_deleted_objects_names_them_for_their_tenant(
    client, operator_a, superuser, gone
):
    for user in (operator_a, superuser):
        client.force_login(user)
        for url in object_history_pages(gone.values()) + change_pages(gone["prefix"]):
            response = client.get(url)
            assert response.status_code == 200, (user, url)
            for change in response.context.get("changes") or ():
                assert "#" not in change.label, (url, change)  # no "trunk #12" fallback

        # no admin of its own, so no history page of its own: a 404, not a 500
        target_url = f"/admin/routing/routetarget/{gone['target'].pk}/history/"
        assert client.get(target_url).status_code == 404

    client.force_login(operator_a)
    for obj, title in ((gone["carrier"], "Blue Line"), (gone["prefix"], "4420")):
        assert client.get(history_url(obj)).context["title"] == f"Change history: {title}"
    trunk_page = client.get(history_url(gone["trunk"]))
    assert trunk_page.context["title"] == "Change history: Blue Line / bl-east"
    assert "Blue Line / bl-east" in trunk_page.content.decode()
    version = gone["trunk"].history.earliest()
    version_page = client.get(version_url(gone["trunk"], version))
    assert version_page.context["title"] == "Revert Blue Line / bl-east"
    changes = client.get(CHANGES, {"prefix": gone["prefix"].pk}).context["changes"]
    assert "4420 → Blue Line / bl-east (priority 1, weight 30)" in {c.label for c in changes}
    retarget = next(c for c in changes if c.kind == "route target" and c.action == "changed")
    trunk_change = next(row for row in retarget.changes if row["field"] == "Trunk")
    assert (trunk_change["old"], trunk_change["new"]) == (
        "Blue Line / bl-west",
        "Blue Line / bl-east",
    )


def test_an_outsider_gets_404_naming_nothing_for_the_history_of_deleted_objects(outsider, gone):
    client = Client()  # a fresh browser: no message left over from operator A's deletions
    client.force_login(outsider)
    for url in object_history_pages(gone.values()):
        response = client.get(url)
        assert response.status_code == 404, url
        html = response.content.decode()
        assert not [name for name in GONE_NAMES if name in html], url
    for url in change_pages(gone["prefix"]):
        response = client.get(url)
        assert response.status_code == 200, url  # the outsider's own changes, none of A's
        html = response.content.decode()
        assert not [name for name in (*GONE_NAMES, "operator-a") if name in html], url


def churn(tenant, tag: str, number: int, *, delete: bool) -> None:
    """`number` carriers, each with a trunk and a route to it, changed and maybe deleted."""
    for n in range(number):
        trunk = make_trunk(tenant, f"trunk-{tag}{n}", carrier=f"Carrier {tag}{n}")
        route = make_route(tenant, f"99{ord(tag[0])}{n}", trunk)
        target = route.targets.get()
        target.weight = 50
        target.save()
        trunk.host = f"sbc-{n}.example.net"
        trunk.save()
        if delete:
            route.delete()
            trunk.delete()
            trunk.carrier.delete()


def queries_for(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("kind", ["", "carrier", "trunk", "dialprefix", "routetarget"])
def test_recent_changes_costs_the_same_queries_for_more_entries(client, operator_a, tenant_a, kind):
    url = f"{CHANGES}?kind={kind}"
    churn(tenant_a, "a", 1, delete=False)
    churn(tenant_a, "b", 1, delete=True)
    client.force_login(operator_a)
    few = queries_for(client, url)
    few_entries = len(client.get(url).context["changes"])

    churn(tenant_a, "cc", 8, delete=False)
    churn(tenant_a, "ddd", 8, delete=True)
    many = queries_for(client, url)

    assert len(client.get(url).context["changes"]) >= 2 * few_entries
    if kind:
        assert many == few
    else:  # fewer kinds of object on the page now (no tenant, no source): fewer queries
        assert many <= few


def test_a_history_page_costs_the_same_queries_for_more_versions(client, operator_a, tenant_a):
    few = make_trunk(tenant_a, "bl-east", carrier="Blue Line")
    many = make_trunk(tenant_a, "rl-east", carrier="Red Line")
    for n in range(20):
        many.host = f"sbc-{n}.example.net"
        many.save()
    Carrier.objects.all().delete()
    client.force_login(operator_a)
    queries_for(client, history_url(few))  # per-process caches (content types) warm

    assert queries_for(client, history_url(many)) == queries_for(client, history_url(few))


@pytest.mark.django_db
def test_names_never_raise_when_a_parent_is_gone():
    assert str(Trunk(carrier_id=999, name="bl-east")) == "bl-east (carrier deleted)"
    target = RouteTarget(prefix_id=999, trunk_id=998, priority=2, weight=40)
    assert str(target) == "(deleted prefix) → (deleted trunk) (priority 2, weight 40)"
    assert str(TenantSource(tenant_id=999, network="192.0.2.0/24")) == (
        "192.0.2.0/24 (deleted tenant)"
    )
