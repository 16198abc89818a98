"""The REST API and the admin of blocklists: tenant-scoped, writes through the services."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from blocklists.models import Blocklist, BlocklistEntry
from routing.models import RouteChange
from tests.blocklists.conftest import make_list

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(operator_a) -> APIClient:
    client = APIClient()
    client.force_authenticate(operator_a)
    return client


@pytest.fixture
def outsider_api(outsider) -> APIClient:
    client = APIClient()
    client.force_authenticate(outsider)
    return client


@pytest.fixture
def fraud(tenant_a) -> Blocklist:
    return make_list(tenant_a, "Fraud", "caller", "4420*\n33123\n")


def test_an_operator_creates_a_list_in_their_tenant_and_adds_entries(api, tenant_a):
    created = api.post(
        "/api/v1/blocklists",
        {"name": "Fraud", "kind": "caller", "reply_code": 603, "reply_reason": "Decline"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["tenant"], body["reply_code"], body["entries_count"]) == ("tenant-a", 603, 0)
    entry = api.post(
        "/api/v1/blocklist-entries",
        {"list": body["id"], "value": "+4420", "match": "prefix"},
        format="json",
    )
    assert entry.status_code == 201, entry.json()
    assert entry.json()["value"] == "4420"
    assert Blocklist.objects.get(pk=body["id"]).entries_count == 1
    assert RouteChange.objects.filter(kind="blocklist", key=str(body["id"])).exists()
    bad = api.post("/api/v1/blocklist-entries", {"list": body["id"], "value": "44x"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["value"] == ["'44x' is not digits (a leading + is allowed)"]
    duplicate = api.post("/api/v1/blocklists", {"name": "Fraud", "kind": "callee"}, format="json")
    assert duplicate.status_code == 400
    assert "already has a blocklist with this name" in str(duplicate.json())


def test_the_import_endpoint_lists_bad_lines_and_writes_nothing(api, fraud):
    bad = SimpleUploadedFile("bad.txt", b"111\n12a\n")
    answer = api.post(f"/api/v1/blocklists/{fraud.pk}/import", {"file": bad}, format="multipart")
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {"line": 2, "message": "'12a' is not digits (a leading + is allowed)"}
    ]
    good = SimpleUploadedFile("good.csv", b"value,match\n111,\n22,prefix\n")
    answer = api.post(
        f"/api/v1/blocklists/{fraud.pk}/import",
        {"file": good, "replace": "true"},
        format="multipart",
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json() == {"read": 2, "total": 2, "replaced": True}
    assert set(fraud.entries.values_list("value", flat=True)) == {"111", "22"}


def test_an_outsider_never_learns_another_tenants_list_exists(outsider_api, fraud):
    entry = fraud.entries.first()
    assert outsider_api.get("/api/v1/blocklists").json()["results"] == []
    assert outsider_api.get("/api/v1/blocklist-entries").json()["results"] == []
    for url in (f"/api/v1/blocklists/{fraud.pk}", f"/api/v1/blocklist-entries/{entry.pk}"):
        assert outsider_api.get(url).status_code == 404
        assert outsider_api.patch(url, {"name": "x"}, format="json").status_code == 404
        assert outsider_api.delete(url).status_code == 404
    upload = SimpleUploadedFile("x.txt", b"1\n")
    imported = outsider_api.post(f"/api/v1/blocklists/{fraud.pk}/import", {"file": upload})
    assert imported.status_code == 404
    # Naming the list in a write is refused like an unknown id.
    sneaky = outsider_api.post(
        "/api/v1/blocklist-entries", {"list": fraud.pk, "value": "1"}, format="json"
    )
    assert sneaky.status_code == 400
    assert "Invalid pk" in str(sneaky.json()["list"])
    assert fraud.entries.count() == 2


def test_deleting_a_list_deletes_its_entries(api, fraud):
    assert api.delete(f"/api/v1/blocklists/{fraud.pk}").status_code == 204
    assert not Blocklist.objects.exists()
    assert not BlocklistEntry.objects.exists()


# --- Admin ---------------------------------------------------------------------------------


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_edits_and_imports_the_operators_lists(operator_a, fraud):
    client = admin_client(operator_a)
    page = client.get("/admin/blocklists/blocklist/")
    assert page.status_code == 200
    assert b"Fraud" in page.content
    assert b"Import entries" in page.content
    change = client.get(f"/admin/blocklists/blocklist/{fraud.pk}/change/")
    assert change.status_code == 200
    assert b"4420" in change.content  # a small list shows its entries inline
    answer = client.post(
        "/admin/blocklists/blocklist/import/",
        {"blocklist": fraud.pk, "file": SimpleUploadedFile("f.txt", b"999\nnope\n")},
    )
    assert answer.status_code == 200
    assert b"Nothing was imported" in answer.content
    assert b"&#x27;nope&#x27; is not digits" in answer.content
    answer = client.post(
        "/admin/blocklists/blocklist/import/",
        {"blocklist": fraud.pk, "file": SimpleUploadedFile("f.txt", b"999\n")},
    )
    assert answer.status_code == 302
    assert fraud.entries.filter(value="999").exists()
    entries = client.get(f"/admin/blocklists/blocklistentry/?list__id__exact={fraud.pk}")
    assert entries.status_code == 200
    assert b"999" in entries.content
    assert client.get(f"/admin/blocklists/blocklist/{fraud.pk}/history/").status_code == 200


def test_the_admin_saves_a_list_through_the_services(operator_a, tenant_a):
    client = admin_client(operator_a)
    answer = client.post(
        "/admin/blocklists/blocklist/add/",
        {
            "name": "Premium",
            "kind": "callee",
            "reply_code": "403",
            "reply_reason": "Blocked",
            "is_active": "on",
            "description": "",
            "entries-TOTAL_FORMS": "1",
            "entries-INITIAL_FORMS": "0",
            "entries-MIN_NUM_FORMS": "0",
            "entries-MAX_NUM_FORMS": "1000",
            "entries-0-value": "+3389",
            "entries-0-match": "prefix",
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    premium = Blocklist.objects.get(name="Premium")
    assert premium.tenant == tenant_a
    assert list(premium.entries.values_list("value", "match")) == [("3389", "prefix")]
    assert premium.entries_count == 1


def test_the_admin_hides_another_tenants_lists_and_entries(outsider, fraud):
    client = admin_client(outsider)
    page = client.get("/admin/blocklists/blocklist/")
    assert page.status_code == 200
    assert b"Fraud" not in page.content
    assert client.get(f"/admin/blocklists/blocklist/{fraud.pk}/change/").status_code in (302, 404)
    entries = client.get("/admin/blocklists/blocklistentry/")
    assert b"4420" not in entries.content
    assert b"Fraud" not in entries.content
    form = client.get("/admin/blocklists/blocklist/import/")
    assert b"Fraud" not in form.content
    answer = client.post(
        "/admin/blocklists/blocklist/import/",
        {"blocklist": fraud.pk, "file": SimpleUploadedFile("f.txt", b"999\n")},
    )
    assert answer.status_code == 200  # an invalid choice, nothing imported
    assert not fraud.entries.filter(value="999").exists()
    history = client.get(f"/admin/blocklists/blocklist/{fraud.pk}/history/")
    assert history.status_code in (302, 404)


def test_a_large_lists_entries_are_not_inlined(operator_a, fraud):
    Blocklist.objects.filter(pk=fraud.pk).update(entries_count=201)
    page = admin_client(operator_a).get(f"/admin/blocklists/blocklist/{fraud.pk}/change/")
    assert page.status_code == 200
    assert b"entries-TOTAL_FORMS" not in page.content
