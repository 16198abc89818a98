"""The rate deck admin: listed with their state, rates shown, import and export, tenant-scoped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from rating.models import RateDeck
from routing.models import RouteChange
from tests.rating.conftest import HEADER, make_deck

BODY = HEADER + "33,France,0.012,0,60,60\n336,France mobile,0.0451,0.01,30,6\n"


@pytest.fixture
def decks_a(carrier_a):
    now = timezone.now()
    return (
        make_deck(carrier_a, BODY, at=now - timedelta(days=30)).deck,
        make_deck(carrier_a, BODY, at=now - timedelta(days=1)).deck,
        make_deck(carrier_a, BODY, at=now + timedelta(days=1)).deck,
    )


def test_decks_are_listed_with_their_state(client, operator_a, decks_a):
    client.force_login(operator_a)
    page = client.get(reverse("admin:rating_ratedeck_changelist")).content.decode()
    for state in ("past", "in force", "future"):
        assert f'<td class="field-state">{state}</td>' in page
    assert "Import rate deck" in page
    state = client.get(reverse("admin:rating_ratedeck_changelist"), {"state": "in force"})
    assert state.context["cl"].result_count == 1


def test_a_deck_page_shows_its_rates_read_only(client, operator_a, decks_a):
    client.force_login(operator_a)
    page = client.get(reverse("admin:rating_ratedeck_change", args=[decks_a[1].pk]))
    text = page.content.decode()
    assert "France mobile" in text
    assert "0.0451" in text
    assert "in force" in text
    assert 'name="_save"' not in text


def test_export_gives_the_deck_as_csv(client, operator_a, decks_a):
    client.force_login(operator_a)
    response = client.get(reverse("admin:rating_ratedeck_export", args=[decks_a[0].pk]))
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("prefix,description,rate,connect_fee,initial_increment,next_increment,")
    assert "336,France mobile,0.0451,0.01,30,6," in body


def test_the_import_page_creates_a_deck_or_lists_the_bad_rows(client, operator_a, carrier_a):
    client.force_login(operator_a)
    url = reverse("admin:rating_ratedeck_import")
    bad = client.post(
        url,
        {
            "carrier": carrier_a.pk,
            "file": SimpleUploadedFile("d.csv", (HEADER + "3a,x,0.1,0,60,60\n").encode()),
            "effective": "2026-12-01",
            "currency": "EUR",
        },
    )
    assert bad.status_code == 200
    assert [(e.line, e.column) for e in bad.context["errors"]] == [(2, "prefix")]
    good = client.post(
        url,
        {
            "carrier": carrier_a.pk,
            "file": SimpleUploadedFile("d.csv", ("\ufeff" + BODY).encode()),
            "effective": "2026-12-01",
            "currency": "EUR",
        },
    )
    assert good.status_code == 302
    deck = RateDeck.objects.get()
    assert (deck.rows, deck.currency, deck.created_by) == (2, "EUR", operator_a)


def test_deleting_a_deck_tells_every_process(client, operator_a, decks_a):
    client.force_login(operator_a)
    before = RouteChange.objects.filter(kind="deck").count()
    url = reverse("admin:rating_ratedeck_delete", args=[decks_a[2].pk])
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not RateDeck.objects.filter(pk=decks_a[2].pk).exists()
    assert RouteChange.objects.filter(kind="deck").count() == before + 1


def test_an_outsider_never_sees_another_tenants_decks(client, outsider, decks_a, carrier_a):
    client.force_login(outsider)
    listing = client.get(reverse("admin:rating_ratedeck_changelist"))
    assert listing.context["cl"].result_count == 0
    change = client.get(reverse("admin:rating_ratedeck_change", args=[decks_a[0].pk]))
    assert change.status_code == 302  # the admin's "does not exist" redirect
    export = client.get(reverse("admin:rating_ratedeck_export", args=[decks_a[0].pk]))
    assert export.status_code == 404
    history = client.get(reverse("admin:rating_ratedeck_history", args=[decks_a[0].pk]))
    assert history.status_code in (302, 404)
    delete = client.post(
        reverse("admin:rating_ratedeck_delete", args=[decks_a[0].pk]), {"post": "yes"}
    )
    assert delete.status_code == 302
    assert RateDeck.objects.filter(pk=decks_a[0].pk).exists()


def test_an_outsider_cannot_import_into_another_tenants_carrier(client, outsider, carrier_a):
    client.force_login(outsider)
    url = reverse("admin:rating_ratedeck_import")
    form = client.get(url).context["form"]
    assert carrier_a not in form.fields["carrier"].queryset
    forged = client.post(
        url,
        {
            "carrier": carrier_a.pk,
            "file": SimpleUploadedFile("d.csv", BODY.encode()),
            "effective": "2026-12-01",
            "currency": "EUR",
        },
    )
    assert "carrier" in forged.context["form"].errors
    assert not RateDeck.objects.exists()
