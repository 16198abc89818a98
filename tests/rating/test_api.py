"""The rate deck REST API: list, import, export, delete, the rate of a number; tenant-scoped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from rating.models import RateDeck
from tests.rating.conftest import HEADER, T0, T1, make_deck

BODY = HEADER + "33,France,0.012,0,60,60\n336,France mobile,0.0451,0.01,30,6\n"


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
def decks_a(carrier_a):
    now = timezone.now()
    return (
        make_deck(carrier_a, BODY, at=now - timedelta(days=1)).deck,
        make_deck(carrier_a, HEADER + "33,France,0.011,0,60,60\n", at=now + timedelta(days=1)).deck,
    )


def test_decks_are_listed_and_filtered(api, decks_a, carrier_a):
    body = api.get("/api/v1/rate-decks", {"carrier": carrier_a.pk}).json()
    assert [d["state"] for d in body["results"]] == ["future", "in force"]
    in_force = api.get("/api/v1/rate-decks", {"in_force": "true"}).json()["results"]
    assert [d["id"] for d in in_force] == [decks_a[0].pk]
    one = api.get(f"/api/v1/rate-decks/{decks_a[0].pk}").json()
    assert (one["currency"], one["rows"], one["carrier_name"]) == ("EUR", 2, "Carrier A")


def test_import_creates_a_deck_or_lists_every_bad_row(api, carrier_a):
    bad = api.post(
        "/api/v1/rate-decks/import",
        {
            "file": SimpleUploadedFile("d.csv", (HEADER + "3a,x,-1,0,0,60\n").encode()),
            "carrier": carrier_a.pk,
            "effective": "2026-12-01T00:00:00Z",
            "currency": "EUR",
        },
        format="multipart",
    )
    assert bad.status_code == 400
    assert [(e["line"], e["column"]) for e in bad.json()["errors"]] == [
        (2, "prefix"),
        (2, "rate"),
        (2, "initial_increment"),
    ]
    good = api.post(
        "/api/v1/rate-decks/import",
        {
            "file": SimpleUploadedFile("d.csv", BODY.encode()),
            "carrier": carrier_a.pk,
            "effective": "2026-12-01",
            "currency": "usd",
        },
        format="multipart",
    )
    assert good.status_code == 201, good.content
    assert (good.json()["imported"], good.json()["currency"]) == (2, "USD")
    assert api.post("/api/v1/rate-decks", {}).status_code == 405


def test_export_is_csv_that_imports_back(api, decks_a, carrier_a):
    response = api.get(f"/api/v1/rate-decks/{decks_a[0].pk}/export")
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content)
    assert body.splitlines()[1] == b"33,France,0.012,0,60,60,EUR"
    again = api.post(
        "/api/v1/rate-decks/import",
        {
            "file": SimpleUploadedFile("e.csv", body),
            "carrier": carrier_a.pk,
            "effective": "2020-01-01",
        },
        format="multipart",
    )
    assert again.status_code == 201
    copy = api.get(f"/api/v1/rate-decks/{again.json()['id']}/export")
    assert b"".join(copy.streaming_content) == body


def test_the_rate_of_a_number_at_a_time(api, decks_a, carrier_a):
    now = api.get("/api/v1/rates", {"carrier": carrier_a.pk, "number": "+33612345678"}).json()
    assert (now["prefix"], now["rate"], now["connect_fee"], now["currency"], now["deck"]) == (
        "336",
        "0.0451",
        "0.01",
        "EUR",
        decks_a[0].pk,
    )
    later = (timezone.now() + timedelta(days=2)).isoformat()
    future = api.get("/api/v1/rates", {"carrier": carrier_a.pk, "number": "336", "at": later})
    assert (future.json()["prefix"], future.json()["rate"]) == ("33", "0.011")
    none = api.get("/api/v1/rates", {"carrier": carrier_a.pk, "number": "44", "at": later})
    assert none.status_code == 404
    bad = api.get("/api/v1/rates", {"carrier": "x", "number": "33a", "at": "soon"})
    assert set(bad.json()) == {"carrier", "number", "at"}


def test_delete_removes_the_deck(api, decks_a):
    assert api.delete(f"/api/v1/rate-decks/{decks_a[1].pk}").status_code == 204
    assert not RateDeck.objects.filter(pk=decks_a[1].pk).exists()


def test_an_outsider_gets_404_for_everything_of_another_tenant(outsider_api, decks_a, carrier_a):
    deck = decks_a[0].pk
    assert outsider_api.get("/api/v1/rate-decks").json()["count"] == 0
    missing = outsider_api.get("/api/v1/rate-decks/999999")
    assert outsider_api.get(f"/api/v1/rate-decks/{deck}").json() == missing.json()
    assert outsider_api.get(f"/api/v1/rate-decks/{deck}/export").status_code == 404
    assert outsider_api.delete(f"/api/v1/rate-decks/{deck}").status_code == 404
    assert RateDeck.objects.filter(pk=deck).exists()
    rate = outsider_api.get("/api/v1/rates", {"carrier": carrier_a.pk, "number": "33"})
    nobody = outsider_api.get("/api/v1/rates", {"carrier": 999999, "number": "33"})
    assert (rate.status_code, rate.json()) == (404, nobody.json())
    forged = outsider_api.post(
        "/api/v1/rate-decks/import",
        {
            "file": SimpleUploadedFile("d.csv", BODY.encode()),
            "carrier": carrier_a.pk,
            "effective": "2030-01-01",
            "currency": "EUR",
        },
        format="multipart",
    )
    assert forged.status_code == 404
    assert RateDeck.objects.count() == 2


def test_anonymous_requests_are_refused(decks_a, carrier_a):
    client = APIClient()
    assert client.get("/api/v1/rate-decks").status_code == 401
    assert client.get("/api/v1/rates", {"carrier": carrier_a.pk, "number": "33"}).status_code == 401


def test_past_decks_stay_answerable(api, carrier_a):
    make_deck(carrier_a, BODY, at=T0)
    make_deck(carrier_a, HEADER + "33,France,0.02,0,60,60\n", at=T1)
    old = api.get("/api/v1/rates", {"carrier": carrier_a.pk, "number": "331", "at": "2026-02-01"})
    assert old.json()["rate"] == "0.012"
