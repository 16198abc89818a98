"""Vendor rate decks: what each carrier charges per destination, effective-dated.

A carrier keeps every deck it ever had (past, in force, future); the deck in force
at a time t is the one with the latest `effective_from` <= t. A deck is replaced
whole by importing the next one, never edited row by row, so only RateDeck keeps a
change history.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from rating import rows
from rating.currencies import currency_problem
from routing import validators
from routing.models import Carrier


def validate_currency(value: str) -> None:
    problem = currency_problem(value)
    if problem:
        raise ValidationError(problem)


class DeckState(models.TextChoices):
    IN_FORCE = "in force", "in force"
    FUTURE = "future", "future"
    PAST = "past", "past"


class RateDeckQuerySet(models.QuerySet):
    def in_force_at(self, at: datetime) -> RateDeckQuerySet:
        """The decks in force at `at`: per carrier, the latest effective_from <= at."""
        latest = (
            RateDeck.objects.filter(carrier=models.OuterRef("carrier"), effective_from__lte=at)
            .order_by("-effective_from")
            .values("pk")[:1]
        )
        return self.filter(pk=models.Subquery(latest))


class RateDeck(models.Model):
    """One price list of a carrier (vendor), in force from `effective_from` until the next."""

    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="rate_decks")
    name = models.CharField(
        max_length=255, blank=True, help_text="Where the deck came from, e.g. the file's name."
    )
    currency = models.CharField(
        max_length=3,
        validators=[validate_currency],
        help_text="ISO 4217 code of every rate in the deck, e.g. EUR.",
    )
    effective_from = models.DateTimeField(
        help_text="The deck is in force from this moment until the carrier's next deck."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rows = models.PositiveIntegerField(default=0, help_text="Number of rates in the deck.")

    history = HistoricalRecords()
    objects = RateDeckQuerySet.as_manager()

    tenant_path = "carrier__tenant"

    class Meta:
        ordering = ["carrier", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "effective_from"],
                name="ratedeck_one_per_carrier_and_time",
                violation_error_message="This carrier already has a deck effective at that time.",
            ),
        ]

    def __str__(self) -> str:
        carrier = getattr(self, "carrier", None) if self.carrier_id else None
        when = self.effective_from.isoformat() if self.effective_from else "?"
        return f"{carrier or 'no carrier'}: {self.name or 'rate deck'} from {when}"

    def state(self, now: datetime | None = None, in_force_id: int | None = None) -> DeckState:
        """Past, in force or future at `now`; `in_force_id` saves the query when known."""
        now = now or timezone.now()
        if self.effective_from is None or self.effective_from > now:
            return DeckState.FUTURE
        if in_force_id is None:
            current = RateDeck.objects.in_force_at(now).filter(carrier_id=self.carrier_id)
            in_force_id = current.values_list("pk", flat=True).first()
        return DeckState.IN_FORCE if in_force_id == self.pk else DeckState.PAST


class Rate(models.Model):
    """What a carrier charges for numbers under one prefix, in its deck's currency."""

    deck = models.ForeignKey(RateDeck, on_delete=models.CASCADE, related_name="rates")
    prefix = models.CharField(
        max_length=rows.MAX_PREFIX,
        validators=[validators.validate_digits],
        help_text="Digits of the E.164 number (no '+'); the longest matching prefix prices a call.",
    )
    description = models.CharField(max_length=rows.MAX_DESCRIPTION, blank=True)
    rate = models.DecimalField(
        max_digits=rows.MONEY_DIGITS,
        decimal_places=rows.MONEY_PLACES,
        validators=[MinValueValidator(0)],
        help_text="Price per minute.",
    )
    connect_fee = models.DecimalField(
        max_digits=rows.MONEY_DIGITS,
        decimal_places=rows.MONEY_PLACES,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Charged once per answered call.",
    )
    initial_increment = models.PositiveSmallIntegerField(
        default=rows.DEFAULT_INCREMENT,
        validators=[MinValueValidator(1), MaxValueValidator(rows.MAX_INCREMENT)],
        help_text="Seconds billed at least (the first block).",
    )
    next_increment = models.PositiveSmallIntegerField(
        default=rows.DEFAULT_INCREMENT,
        validators=[MinValueValidator(1), MaxValueValidator(rows.MAX_INCREMENT)],
        help_text="Seconds per block after the first.",
    )

    tenant_path = "deck__carrier__tenant"

    class Meta:
        ordering = ["deck", "prefix"]
        constraints = [
            models.UniqueConstraint(
                fields=["deck", "prefix"],
                name="rate_prefix_unique_per_deck",
                violation_error_message="This deck already has a rate for this prefix.",
            ),
            models.CheckConstraint(
                condition=Q(rate__gte=0),
                name="rate_not_negative",
                violation_error_message="A rate cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(connect_fee__gte=0),
                name="rate_connect_fee_not_negative",
                violation_error_message="A connect fee cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(initial_increment__gte=1) & Q(next_increment__gte=1),
                name="rate_increments_positive",
                violation_error_message="Billing increments are at least 1 second.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix or '?'} {self.rate if self.rate is not None else '?'}"
