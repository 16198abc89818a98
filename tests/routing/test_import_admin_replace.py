"""The admin's replace import: a preview with the counts first, the import on confirm."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from ops.admin.imports import PENDING_KEY, pending_directory
from routing.models import DialPrefix, ImportRecord
from tests.factories import default_plan, make_route
from versions.publishing import publish

HEADER = "prefix,action,routing_mode,targets,description\n"
IMPORT = reverse("admin:routing_dialprefix_import")


def upload(body: str, name: str = "small.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, body.encode(), content_type="text/csv")


@pytest.fixture
def big_table_a(tenant_a, trunks_a):
    """1,002 routes in tenant A's plan, of which the file below keeps 8."""
    plan = default_plan(tenant_a)
    DialPrefix.objects.bulk_create(
        DialPrefix(tenant=tenant_a, plan=plan, prefix=str(100000 + n)) for n in range(1002)
    )
    return tenant_a


# 8 routes: two of the plan's as they are (none changed), six new.
SMALL = (
    HEADER
    + "".join(f"{prefix},route,serial,,\n" for prefix in ("100000", "100001"))
    + "".join(f"{n},route,serial,Carrier A/a-primary:1:100,new\n" for n in range(41, 47))
)


def token_of(page: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


def test_a_replace_shows_what_it_deletes_and_writes_nothing_until_confirmed(
    client, operator_a, big_table_a
):
    client.force_login(operator_a)
    plan = default_plan(big_table_a)
    response = client.post(IMPORT, {"plan": plan.pk, "file": upload(SMALL), "replace": "on"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "This deletes 1,000 routes" in page
    assert "1,000 routes deleted" in page
    assert "0 routes changed" in page
    assert "6 routes added" in page
    assert "2 routes kept" in page
    assert "Plan Default is not staged: the import is live as soon as it is committed." in page
    assert 'value="Replace: delete 1,000 routes"' in page
    assert DialPrefix.objects.filter(tenant=big_table_a).count() == 1002
    assert not ImportRecord.objects.exists()
    token = token_of(page)
    assert (pending_directory() / f"{token}.csv").is_file()

    confirmed = client.post(IMPORT, {"token": token})
    assert confirmed.status_code == 302
    assert DialPrefix.objects.filter(tenant=big_table_a).count() == 8
    record = ImportRecord.objects.get()
    assert (record.source, record.deleted, record.user) == ("small.csv", 1000, operator_a)
    assert not (pending_directory() / f"{token}.csv").exists()
    assert token not in client.session[PENDING_KEY]
    # the same confirmation twice imports nothing more
    again = client.post(IMPORT, {"token": token}, follow=True)
    assert "That preview is no longer there" in again.content.decode()
    assert ImportRecord.objects.count() == 1


def test_a_preview_of_a_bad_file_lists_its_problems_and_keeps_nothing(
    client, operator_a, big_table_a
):
    client.force_login(operator_a)
    before = set(pending_directory().glob("*.csv"))
    response = client.post(
        IMPORT,
        {
            "plan": default_plan(big_table_a).pk,
            "file": upload(HEADER + "3x,route,serial,,\n"),
            "replace": "on",
        },
    )
    page = response.content.decode()
    assert "Nothing was imported: 1 problem in the file" in page
    assert 'name="token"' not in page
    assert set(pending_directory().glob("*.csv")) == before
    assert DialPrefix.objects.filter(tenant=big_table_a).count() == 1002


def test_a_staged_plans_preview_says_the_import_goes_to_the_draft(
    client, operator_a, tenant_a, trunks_a
):
    plan = default_plan(tenant_a)
    make_route(tenant_a, "33", trunks_a[0])
    publish(plan, force=True)
    client.force_login(operator_a)
    form_page = client.get(IMPORT).content.decode()
    versions = f"/admin/routing/routingplan/{plan.pk}/versions/"
    assert versions in form_page
    response = client.post(IMPORT, {"plan": plan.pk, "file": upload(SMALL), "replace": "on"})
    page = response.content.decode()
    assert "This deletes 1 route" in page
    assert "Plan Default is staged: the import writes its draft" in page
    assert f'href="{versions}"' in page
    done = client.post(IMPORT, {"token": token_of(page)}, follow=True)
    assert "(its draft: publish it to make it live)" in done.content.decode()
    plan.refresh_from_db()
    assert plan.published_version == 1


def test_an_outsider_never_sees_nor_confirms_another_tenants_preview(
    client, operator_a, outsider, big_table_a
):
    plan = default_plan(big_table_a)
    publish(plan, force=True)  # so that tenant A's page would link its versions
    client.force_login(operator_a)
    page = client.post(
        IMPORT, {"plan": plan.pk, "file": upload(SMALL), "replace": "on"}
    ).content.decode()
    token = token_of(page)

    client.force_login(outsider)  # another session
    response = client.post(IMPORT, {"plan": plan.pk, "file": upload(SMALL), "replace": "on"})
    assert "Select a valid choice" in response.content.decode()
    assert "1,000" not in response.content.decode()
    stolen = client.post(IMPORT, {"token": token}, follow=True)
    assert "That preview is no longer there" in stolen.content.decode()
    assert DialPrefix.objects.filter(tenant=big_table_a).count() == 1002
    assert not ImportRecord.objects.exists()
    form_page = client.get(IMPORT).content.decode()
    assert f"/routingplan/{plan.pk}/versions/" not in form_page


def test_a_merge_in_the_admin_needs_no_confirmation(client, operator_a, big_table_a):
    client.force_login(operator_a)
    response = client.post(IMPORT, {"plan": default_plan(big_table_a).pk, "file": upload(SMALL)})
    assert response.status_code == 302
    assert DialPrefix.objects.filter(tenant=big_table_a).count() == 1008
