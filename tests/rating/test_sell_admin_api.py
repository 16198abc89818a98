"""Sell decks in the admin and the REST API: listed, imported, exported, priced; scoped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from rating.models import RateDeck
from tests.rating.conftest import HEADER, make_deck

PLAN = HEADER + "33,France,0.020,0,60,60\n336,France mobile,0.060,0.01,30,6\n"
CUSTOMER = HEADER + "33,France,0.015,0,1,1\n"
VENDOR = HEADER + "33,France,0.010,0,60,60\n"


@pytest.fixture
def decks_a(carrier_a, premium_a, customer_a):
    at = timezone.now() - timedelta(days=1)
    return (
        make_deck(carrier_a, VENDOR, at=at).deck,
        make_deck(premium_a, PLAN, at=at).deck,
        make_deck(customer_a, CUSTOMER, at=at).deck,
    )


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


def upload(body: str = PLAN) -> SimpleUploadedFile:
    return SimpleUploadedFile("sell.csv", body.encode())


# --- Admin ----------------------------------------------------------------------------


def test_the_admin_lists_sell_decks_by_owner_and_kind(client, operator_a, decks_a):
    client.force_login(operator_a)
    url = reverse("admin:rating_ratedeck_changelist")
    page = client.get(url).content.decode()
    assert '<td class="field-owner_column">plan Premium</td>' in page
    assert '<td class="field-owner_column">customer Initech</td>' in page
    assert client.get(url, {"kind": "sell"}).context["cl"].result_count == 2
    assert client.get(url, {"kind": "vendor"}).context["cl"].result_count == 1
    by_plan = client.get(url, {"plan__id__exact": decks_a[1].plan_id})
    assert by_plan.context["cl"].result_count == 1
    change = client.get(reverse("admin:rating_ratedeck_change", args=[decks_a[1].pk]))
    assert "France mobile" in change.content.decode()
    export = client.get(reverse("admin:rating_ratedeck_export", args=[decks_a[2].pk]))
    assert "33,France,0.015,0,1,1," in b"".join(export.streaming_content).decode()


def test_the_admin_imports_a_sell_deck_for_one_owner(client, operator_a, premium_a, customer_a):
    client.force_login(operator_a)
    url = reverse("admin:rating_ratedeck_import")
    values = {"file": upload(), "effective": "2026-12-01", "currency": "EUR"}
    both = client.post(url, {**values, "plan": premium_a.pk, "customer": customer_a.pk})
    assert "exactly one owner" in str(both.context["form"].non_field_errors())
    good = client.post(url, {**values, "file": upload(), "plan": premium_a.pk})
    assert good.status_code == 302
    deck = RateDeck.objects.get()
    assert (deck.plan, deck.rows, deck.tenant_id) == (premium_a, 2, premium_a.tenant_id)


def test_the_admin_lists_the_currency_conflict(client, operator_a, carrier_a, premium_a):
    make_deck(carrier_a, VENDOR, currency="USD")
    client.force_login(operator_a)
    url = reverse("admin:rating_ratedeck_import")
    page = client.post(
        url, {"file": upload(), "plan": premium_a.pk, "effective": "2026-12-01", "currency": "EUR"}
    )
    assert page.status_code == 200
    assert "Carrier A (USD)" in page.content.decode()
    assert not RateDeck.objects.filter(plan=premium_a).exists()


def test_an_outsider_never_sees_or_imports_another_tenants_sell_decks(
    client, outsider, decks_a, premium_a, customer_a
):
    client.force_login(outsider)
    listing = client.get(reverse("admin:rating_ratedeck_changelist"))
    assert listing.context["cl"].result_count == 0
    for deck in decks_a[1:]:
        export = client.get(reverse("admin:rating_ratedeck_export", args=[deck.pk]))
        assert export.status_code == 404
        change = client.get(reverse("admin:rating_ratedeck_change", args=[deck.pk]))
        assert change.status_code == 302
    url = reverse("admin:rating_ratedeck_import")
    form = client.get(url).context["form"]
    assert premium_a not in form.fields["plan"].queryset
    assert customer_a not in form.fields["customer"].queryset
    forged = client.post(
        url, {"file": upload(), "plan": premium_a.pk, "effective": "2030-01-01", "currency": "EUR"}
    )
    assert "plan" in forged.context["form"].errors
    assert RateDeck.objects.count() == 3


# --- REST API -------------------------------------------------------------------------


def test_the_api_lists_and_filters_sell_decks(api, decks_a, premium_a, customer_a):
    sell = api.get("/api/v1/rate-decks", {"kind": "sell"}).json()["results"]
    assert {d["owner"] for d in sell} == {"plan Premium", "customer Initech"}
    one = api.get("/api/v1/rate-decks", {"plan": premium_a.pk}).json()["results"]
    assert [(d["kind"], d["plan_name"], d["carrier"]) for d in one] == [("sell", "Premium", None)]
    mine = api.get("/api/v1/rate-decks", {"customer": customer_a.pk}).json()["results"]
    assert [d["customer_name"] for d in mine] == ["Initech"]
    vendor = api.get(f"/api/v1/rate-decks/{decks_a[0].pk}").json()
    assert (vendor["kind"], vendor["carrier_name"], vendor["plan"]) == ("vendor", "Carrier A", None)


def test_the_api_imports_and_exports_a_sell_deck(api, carrier_a, customer_a):
    form = {"file": upload(), "customer": customer_a.pk, "effective": "2026-12-01"}
    created = api.post("/api/v1/rate-decks/import", {**form, "currency": "EUR"}, format="multipart")
    assert created.status_code == 201, created.content
    assert (created.json()["kind"], created.json()["customer"]) == ("sell", customer_a.pk)
    export = api.get(f"/api/v1/rate-decks/{created.json()['id']}/export")
    assert b"336,France mobile,0.06,0.01,30,6,EUR" in b"".join(export.streaming_content)
    neither = api.post(
        "/api/v1/rate-decks/import", {"file": upload(), "currency": "EUR"}, format="multipart"
    )
    assert (neither.status_code, list(neither.json())) == (400, ["owner"])
    both = api.post(
        "/api/v1/rate-decks/import",
        {**form, "file": upload(), "carrier": carrier_a.pk},
        format="multipart",
    )
    assert both.status_code == 400
    # A vendor deck in another currency than the sell decks in force: every problem listed.
    usd = api.post(
        "/api/v1/rate-decks/import",
        {
            "file": upload(VENDOR),
            "carrier": carrier_a.pk,
            "effective": "2027-01-01",
            "currency": "USD",
        },
        format="multipart",
    )
    assert usd.status_code == 400
    assert "customer Initech (EUR)" in usd.json()["errors"][0]["message"]


def test_the_sell_rate_of_a_number(api, decks_a, premium_a, customer_a, plan_a):
    by_plan = api.get("/api/v1/rates", {"plan": premium_a.pk, "number": "+33612"}).json()
    assert (by_plan["kind"], by_plan["rate"], by_plan["deck"]) == ("sell", "0.06", decks_a[1].pk)
    by_customer = api.get("/api/v1/rates", {"customer": customer_a.pk, "number": "33612"}).json()
    assert (by_customer["rate"], by_customer["plan"], by_customer["deck"]) == (
        "0.015",
        premium_a.pk,
        decks_a[2].pk,
    )
    vendor = api.get("/api/v1/rates", {"carrier": decks_a[0].carrier_id, "number": "33"}).json()
    assert (vendor["kind"], vendor["rate"]) == ("vendor", "0.01")
    none = api.get("/api/v1/rates", {"plan": plan_a.pk, "number": "33"})
    assert none.status_code == 404
    mixed = api.get(
        "/api/v1/rates", {"carrier": decks_a[0].carrier_id, "plan": premium_a.pk, "number": "33"}
    )
    assert mixed.status_code == 400
    assert set(api.get("/api/v1/rates", {"number": "33"}).json()) == {"carrier"}


def test_an_outsider_gets_404_for_another_tenants_sell_decks_and_rates(
    outsider_api, decks_a, premium_a, customer_a
):
    assert outsider_api.get("/api/v1/rate-decks", {"kind": "sell"}).json()["count"] == 0
    missing = outsider_api.get("/api/v1/rate-decks/999999").json()
    for deck in decks_a[1:]:
        assert outsider_api.get(f"/api/v1/rate-decks/{deck.pk}").json() == missing
        assert outsider_api.get(f"/api/v1/rate-decks/{deck.pk}/export").status_code == 404
        assert outsider_api.delete(f"/api/v1/rate-decks/{deck.pk}").status_code == 404
    plan = outsider_api.get("/api/v1/rates", {"plan": premium_a.pk, "number": "33"})
    nobody = outsider_api.get("/api/v1/rates", {"plan": 999999, "number": "33"})
    assert (plan.status_code, plan.json()) == (404, nobody.json())
    customer = outsider_api.get("/api/v1/rates", {"customer": customer_a.pk, "number": "33"})
    assert customer.status_code == 404
    for owner in ({"plan": premium_a.pk}, {"customer": customer_a.pk}):
        forged = outsider_api.post(
            "/api/v1/rate-decks/import",
            {"file": upload(), **owner, "effective": "2030-01-01", "currency": "EUR"},
            format="multipart",
        )
        assert forged.status_code == 404
    assert RateDeck.objects.count() == 3
