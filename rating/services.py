"""Writes and reads of rate decks that the admin, the REST API and the commands share.

A deck is created by an import (rating.importing.import_deck) and removed whole by
`delete_deck()`; neither edits rates in place. Both record a `deck` change in the
route-table change log (routing.changes) in their transaction, so every process's
rate store (rating.lookup) reloads that carrier's decks: there are no triggers on
the rating tables, so a deck deleted any other way (a queryset's delete(), psql)
is not seen by running processes until their next full reload.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from rating.models import RateDeck
from routing import changes
from routing.models import Carrier
from routing.services import check_written, require_tenant
from tenants.scoping import tenant_of


def delete_deck(*, user, deck: RateDeck) -> None:
    """Delete a deck and its rates; the user must operate the deck's tenant."""
    with transaction.atomic():
        require_tenant(user=user, tenant=tenant_of(deck))
        check_written(user=user, rows=[deck])
        carrier = deck.carrier
        deck.delete()
        record_deck_change(carrier)


def record_deck_change(carrier: Carrier, using: str = "default") -> int:
    """Tell every process to reload `carrier`'s decks (inside the writing transaction)."""
    return changes.record_change(
        changes.DECK, tenant_id=carrier.tenant_id, key=str(carrier.pk), using=using
    )


def deck_in_force(carrier_id: int, at: datetime, using: str = "default") -> RateDeck | None:
    """The carrier's deck with the latest effective_from <= at (one indexed query)."""
    return (
        RateDeck.objects.using(using)
        .filter(carrier_id=carrier_id, effective_from__lte=at)
        .order_by("-effective_from")
        .first()
    )
