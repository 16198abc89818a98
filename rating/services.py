"""Writes and reads of rate decks that the admin, the REST API and the commands share.

A deck is created by an import (rating.importing.import_deck) and removed whole by
`delete_deck()`; neither edits rates in place. Both record a `deck` change in the
route-table change log (routing.changes) in their transaction, so every process's
rate store (rating.lookup) reloads that owner's decks: there are no triggers on
the rating tables, so a deck deleted any other way (a queryset's delete(), psql)
is not seen by running processes until their next full reload.

A deck's owner is named by an `Owner` (the field and the id). In the change log a
carrier is its id alone (as before sell decks), a plan `plan:<id>` and a customer
`customer:<id>` (`owner_key()` / `parse_owner_key()`).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db import models, transaction

from rating.models import OWNER_FIELDS, RateDeck
from routing import changes
from routing.models import Carrier, Customer, RoutingPlan
from routing.services import check_written, require_tenant
from tenants.scoping import tenant_of

# Which routing model's permissions a kind of owner follows (besides rating.*_ratedeck).
OWNER_MODELS = {"carrier": "carrier", "plan": "routingplan", "customer": "customer"}


class Owner(NamedTuple):
    """Who owns a deck: the field ("carrier", "plan" or "customer") and the id."""

    field: str
    id: int

    @classmethod
    def of(cls, owner: models.Model) -> Owner:
        """The Owner of a Carrier, RoutingPlan or Customer instance."""
        name = type(owner)._meta.model_name
        field = next(f for f, model in OWNER_MODELS.items() if model == name)
        return cls(field, owner.pk)

    @property
    def filter(self) -> dict[str, int]:
        return {f"{self.field}_id": self.id}


def owner_of(deck: RateDeck) -> Owner:
    return Owner(deck.owner_field, deck.owner_id)


def owner_key(owner: Owner) -> str:
    return str(owner.id) if owner.field == "carrier" else f"{owner.field}:{owner.id}"


def parse_owner_key(key: str) -> Owner | None:
    field, _, pk = key.rpartition(":")
    field = field or "carrier"
    if field not in OWNER_FIELDS or not pk.isdigit():
        return None
    return Owner(field, int(pk))


def may(user, action: str, field: str | None = None) -> bool:
    """Whether `user` may `action` ("view", "change") decks of this kind of owner (any: None).

    A deck follows its owner's permissions (the carrier's, the plan's, the customer's);
    rating.<action>_ratedeck allows every kind.
    """
    if user.has_perm(f"rating.{action}_ratedeck"):
        return True
    fields = [field] if field else list(OWNER_MODELS)
    return any(user.has_perm(f"routing.{action}_{OWNER_MODELS[f]}") for f in fields)


def delete_deck(*, user, deck: RateDeck) -> None:
    """Delete a deck and its rates; the user must operate the deck's tenant."""
    with transaction.atomic():
        require_tenant(user=user, tenant=tenant_of(deck))
        check_written(user=user, rows=[deck])
        owner, tenant_id = owner_of(deck), deck.tenant_id
        deck.delete()
        record_deck_change(owner, tenant_id)


def record_deck_change(owner: Owner, tenant_id: int, using: str = "default") -> int:
    """Tell every process to reload `owner`'s decks (inside the writing transaction)."""
    return changes.record_change(
        changes.DECK, tenant_id=tenant_id, key=owner_key(owner), using=using
    )


def deck_in_force(owner: Owner | int, at: datetime, using: str = "default") -> RateDeck | None:
    """The owner's (a carrier when an int) deck with the latest effective_from <= at."""
    if isinstance(owner, int):
        owner = Owner("carrier", owner)
    return (
        RateDeck.objects.using(using)
        .filter(**owner.filter, effective_from__lte=at)
        .order_by("-effective_from")
        .first()
    )


def owner_named(
    *, tenant: str, carrier: str | None = None, plan: str | None = None, customer: str | None = None
) -> models.Model:
    """The carrier, plan or customer (exactly one name given) of the tenant with slug `tenant`.

    Raises LookupError with a message for the command line when there is none.
    """
    given = [(f, n) for f, n in (("carrier", carrier), ("plan", plan), ("customer", customer)) if n]
    if len(given) != 1:
        raise LookupError("Name exactly one of --carrier, --plan or --customer.")
    field, name = given[0]
    model = {"carrier": Carrier, "plan": RoutingPlan, "customer": Customer}[field]
    found = model.objects.select_related("tenant").filter(tenant__slug=tenant, name=name).first()
    if found is None:
        raise LookupError(f"No {field} {name!r} in tenant {tenant!r}.")
    return found
