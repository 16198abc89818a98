"""The admin's "change many" pages (ops.admin.bulk): a trunk's routes and their
replacement, the bulk edit of the prefix list's filtered rows, the filtered export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.http import QueryDict
from django.urls import reverse

from routing.models import DialPrefix, RouteTarget
from tests.factories import make_route, make_trunk

BULK = reverse("admin:routing_dialprefix_bulk_edit")
EXPORT = reverse("admin:routing_dialprefix_export")
LINK = re.compile(r'<a id="(?P<id>[\w-]+)" href="(?P<href>[^"]+)"')


@pytest.fixture
def spare_a(tenant_a):
    return make_trunk(tenant_a, "a-spare", carrier="Carrier A2")


def replace_url(trunk) -> str:
    return reverse("admin:routing_trunk_replace", args=[trunk.pk])


def test_the_trunk_page_lists_its_routes_with_links(client, operator_a, trunks_a, route_a):
    make_route(operator_a.tenant, "44", trunks_a[0], description="UK")
    client.force_login(operator_a)
    page = client.get(reverse("admin:routing_trunk_change", args=[trunks_a[0].pk]))
    assert page.context["trunk_route_count"] == 2
    body = page.content.decode()
    assert "Routes using this trunk: 2" in body
    assert reverse("admin:routing_dialprefix_change", args=[route_a.pk]) in body
    assert replace_url(trunks_a[0]) in body


def test_replace_previews_then_applies_and_says_how_many(client, operator_a, trunks_a, spare_a):
    primary, backup = trunks_a
    make_route(operator_a.tenant, "44", primary, backup)
    client.force_login(operator_a)
    form = {"new_trunk": spare_a.pk, "mode": "replace", "_preview": "Preview"}
    preview = client.post(replace_url(primary), form)
    assert preview.status_code == 200
    assert preview.context["preview"].count == 1
    assert "1 route will change" in preview.content.decode()
    assert RouteTarget.objects.filter(trunk=primary).exists()  # nothing written yet
    fingerprint = preview.context["form"]["fingerprint"].value()
    done = client.post(
        replace_url(primary),
        {**form, "fingerprint": fingerprint, "_apply": "Apply"},
        follow=True,
    )
    assert "Replaced Carrier A / a-primary by Carrier A2 / a-spare on 1 route." in (
        done.content.decode()
    )
    assert not RouteTarget.objects.filter(trunk=primary).exists()


def test_a_stale_replace_shows_the_new_preview_and_writes_nothing(
    client, operator_a, trunks_a, spare_a
):
    primary, _ = trunks_a
    make_route(operator_a.tenant, "44", primary)
    client.force_login(operator_a)
    form = {"new_trunk": spare_a.pk, "mode": "replace"}
    preview = client.post(replace_url(primary), {**form, "_preview": "Preview"})
    make_route(operator_a.tenant, "45", primary)
    again = client.post(
        replace_url(primary),
        {**form, "fingerprint": preview.context["form"]["fingerprint"].value(), "_apply": "1"},
    )
    assert "changed since the preview" in again.content.decode()
    assert again.context["preview"].count == 2
    assert RouteTarget.objects.filter(trunk=primary).count() == 2


def test_an_outsider_sees_no_route_and_cannot_replace_a_trunk_of_another_tenant(
    client, outsider, trunks_a, spare_a, route_a, trunks_b
):
    client.force_login(outsider)
    assert client.get(replace_url(trunks_a[0])).status_code == 404
    answer = client.post(
        replace_url(trunks_a[0]), {"new_trunk": spare_a.pk, "mode": "replace", "_apply": "1"}
    )
    assert answer.status_code == 404
    # Their own trunk's page offers only their own trunks, and A's is not a valid choice.
    page = client.post(
        replace_url(trunks_b[0]), {"new_trunk": spare_a.pk, "mode": "replace", "_preview": "1"}
    )
    assert "Select a valid choice" in page.content.decode()
    assert "a-spare" not in page.content.decode()
    assert RouteTarget.objects.filter(trunk=trunks_a[0]).count() == 1


def test_bulk_edit_acts_on_every_filtered_row_not_just_the_page(client, operator_a, trunks_a):
    for n in range(5):
        make_route(operator_a.tenant, f"44{n}", trunks_a[0], description="London")
    make_route(operator_a.tenant, "33", trunks_a[0], description="Paris")
    client.force_login(operator_a)
    url = f"{BULK}?q=London"  # the list's search (a number would find one chain)
    form = {"is_active": "no", "_preview": "1"}
    preview = client.post(url, form)
    assert preview.context["preview"].count == 5
    fingerprint = preview.context["form"]["fingerprint"].value()
    done = client.post(url, {**form, "fingerprint": fingerprint, "_apply": "1"}, follow=True)
    assert "Changed 5 routes of 5." in done.content.decode()
    assert done.redirect_chain[-1][0].endswith("?q=London")
    assert set(DialPrefix.objects.filter(is_active=False).values_list("prefix", flat=True)) == {
        f"44{n}" for n in range(5)
    }


def test_the_action_edits_the_ticked_rows(client, operator_a, trunks_a):
    routes = [
        make_route(operator_a.tenant, f"44{n}", trunks_a[0], description="London") for n in range(3)
    ]
    client.force_login(operator_a)
    changelist = reverse("admin:routing_dialprefix_changelist")
    answer = client.post(
        f"{changelist}?q=London",
        {"action": "bulk_edit_action", "_selected_action": [routes[0].pk, routes[2].pk]},
    )
    assert answer.status_code == 302
    target = answer["Location"]
    assert "q=London" in target
    assert "ids=" in target
    preview = client.post(target, {"routing_mode": "parallel", "_preview": "1"})
    assert preview.context["preview"].count == 2
    assert "The 2 ticked routes" in preview.content.decode()


def test_the_list_links_carry_its_filters(client, operator_a, route_a):
    client.force_login(operator_a)
    page = client.get(reverse("admin:routing_dialprefix_changelist") + "?q=33&is_active__exact=1")
    links = {link["id"]: link["href"] for link in re.finditer(LINK, page.content.decode())}
    for name, url in (("export-filtered", EXPORT), ("bulk-edit-filtered", BULK)):
        path, _, query = links[name].replace("&amp;", "&").partition("?")
        assert path == url
        assert QueryDict(query) == QueryDict("q=33&is_active__exact=1")


def test_an_outsider_bulk_edit_never_reaches_another_tenant(client, outsider, route_a, route_b):
    client.force_login(outsider)
    preview = client.post(BULK, {"is_active": "no", "_preview": "1"})
    assert preview.context["preview"].selected == 1
    assert "France via A" not in preview.content.decode()
    client.post(
        BULK,
        {
            "is_active": "no",
            "fingerprint": preview.context["form"]["fingerprint"].value(),
            "_apply": "1",
        },
    )
    route_a.refresh_from_db()
    route_b.refresh_from_db()
    assert route_a.is_active
    assert not route_b.is_active
    # Ticking A's route by its id: not among the outsider's rows.
    forged = client.post(f"{BULK}?ids={route_a.pk}", {"is_active": "no", "_preview": "1"})
    assert forged.context["preview"].selected == 0


def test_bad_filters_are_told_not_a_500(client, operator_a):
    client.force_login(operator_a)
    page = client.get(f"{BULK}?nonsense__exact=1")
    assert page.status_code == 200
    assert "filters are not valid" in page.content.decode()
    assert "ticked rows are not valid" in client.get(f"{BULK}?ids=a,b").content.decode()


def export(client, query: str) -> list[list[str]]:
    answer = client.get(f"{EXPORT}?{query}")
    assert answer.status_code == 200, answer.content[:500]
    return list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode())))


def test_the_export_keeps_only_the_filtered_rows(client, operator_a, trunks_a, route_a):
    make_route(operator_a.tenant, "44", trunks_a[0], is_active=False)
    plan = route_a.plan_id
    client.force_login(operator_a)
    everything = export(client, f"plan={plan}")
    assert [row[0] for row in everything[1:]] == ["33", "44"]
    filtered = export(client, f"plan={plan}&is_active__exact=0")
    assert [row[0] for row in filtered[1:]] == ["44"]
    searched = export(client, f"plan={plan}&q=33")
    assert [row[0] for row in searched[1:]] == ["33"]
