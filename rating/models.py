"""Rate decks: what each carrier charges (vendor decks) and what customers pay (sell decks).

A deck has one owner: a carrier (a vendor deck: what the carrier charges), a routing
plan or a customer (a sell deck: what the plan's customers, or that one customer,
pay). One model for both, so the rows, the CSV format, the effective dates, the
currency, the history and the change log are the same code; the named check
constraint `ratedeck_one_owner` holds exactly one owner, and `tenant` is the
owner's tenant, stored so that scoping is one join-free filter for every kind.

An owner keeps every deck it ever had (past, in force, future); the deck in force
at a time t is the one with the latest `effective_from` <= t. A deck is replaced
whole by importing the next one, never edited row by row, so only RateDeck keeps a
change history.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from rating import rows
from rating.currencies import currency_problem
from routing import validators
from routing.models import Carrier, Customer, RoutingPlan
from tenants.models import Tenant

OWNER_FIELDS: tuple[str, ...] = ("carrier", "plan", "customer")
"""The fields that can own a deck, exactly one per deck."""


def validate_currency(value: str) -> None:
    problem = currency_problem(value)
    if problem:
        raise ValidationError(problem)


class DeckState(models.TextChoices):
    IN_FORCE = "in force", "in force"
    FUTURE = "future", "future"
    PAST = "past", "past"


class DeckKind(models.TextChoices):
    VENDOR = "vendor", "vendor (a carrier's)"
    SELL = "sell", "sell (a plan's or a customer's)"


class RateDeckQuerySet(models.QuerySet):
    def in_force_at(self, at: datetime) -> RateDeckQuerySet:
        """The decks in force at `at`: per owner, the latest effective_from <= at."""
        # One subquery per owner field: `owner = OuterRef(owner)` is never true for
        # NULL, so the other kinds of deck cannot match each other's.
        in_force = Q()
        for owner in OWNER_FIELDS:
            latest = (
                RateDeck.objects.filter(**{owner: models.OuterRef(owner)}, effective_from__lte=at)
                .order_by("-effective_from")
                .values("pk")[:1]
            )
            in_force |= Q(**{f"{owner}__isnull": False}, pk=models.Subquery(latest))
        return self.filter(in_force)

    def of_kind(self, kind: str) -> RateDeckQuerySet:
        if kind == DeckKind.VENDOR:
            return self.filter(carrier__isnull=False)
        return self.filter(carrier__isnull=True)


class RateDeck(models.Model):
    """One price list of a carrier (vendor), a routing plan or a customer (sell), in force
    from `effective_from` until its owner's next deck."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.PROTECT,
        related_name="rate_decks",
        help_text="The owner's tenant (set from the owner).",
    )
    carrier = models.ForeignKey(
        Carrier,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="rate_decks",
        help_text="A vendor deck: what this carrier charges.",
    )
    plan = models.ForeignKey(
        RoutingPlan,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="sell_decks",
        help_text="A sell deck: what the customers on this plan pay (unless they have their own).",
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="sell_decks",
        help_text="A sell deck: what this customer pays, instead of its plan's deck.",
    )
    name = models.CharField(
        max_length=255, blank=True, help_text="Where the deck came from, e.g. the file's name."
    )
    currency = models.CharField(
        max_length=3,
        validators=[validate_currency],
        help_text="ISO 4217 code of every rate in the deck, e.g. EUR.",
    )
    effective_from = models.DateTimeField(
        help_text="The deck is in force from this moment until its owner's next deck."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rows = models.PositiveIntegerField(default=0, help_text="Number of rates in the deck.")

    history = HistoricalRecords()
    objects = RateDeckQuerySet.as_manager()

    tenant_path = "tenant"

    class Meta:
        ordering = ["carrier", "plan", "customer", "-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(carrier__isnull=False, plan__isnull=True, customer__isnull=True)
                    | Q(carrier__isnull=True, plan__isnull=False, customer__isnull=True)
                    | Q(carrier__isnull=True, plan__isnull=True, customer__isnull=False)
                ),
                name="ratedeck_one_owner",
                violation_error_message="A rate deck belongs to exactly one carrier, routing "
                "plan or customer.",
            ),
            models.UniqueConstraint(
                fields=["carrier", "effective_from"],
                name="ratedeck_one_per_carrier_and_time",
                violation_error_message="This carrier already has a deck effective at that time.",
            ),
            models.UniqueConstraint(
                fields=["plan", "effective_from"],
                name="ratedeck_one_per_plan_and_time",
                violation_error_message="This plan already has a deck effective at that time.",
            ),
            models.UniqueConstraint(
                fields=["customer", "effective_from"],
                name="ratedeck_one_per_customer_and_time",
                violation_error_message="This customer already has a deck effective at that time.",
            ),
        ]

    def __str__(self) -> str:
        when = self.effective_from.isoformat() if self.effective_from else "?"
        return f"{self.owner_label()}: {self.name or 'rate deck'} from {when}"

    @property
    def owner_field(self) -> str | None:
        """Which field owns the deck: "carrier", "plan" or "customer" (None: not set yet)."""
        return next((f for f in OWNER_FIELDS if getattr(self, f"{f}_id") is not None), None)

    @property
    def owner(self) -> Carrier | RoutingPlan | Customer | None:
        field = self.owner_field
        return getattr(self, field) if field else None

    @property
    def owner_id(self) -> int | None:
        field = self.owner_field
        return getattr(self, f"{field}_id") if field else None

    @property
    def kind(self) -> DeckKind:
        return DeckKind.VENDOR if self.carrier_id is not None else DeckKind.SELL

    def owner_label(self) -> str:
        """ "Carrier X", "plan Premium", "customer Initech" (never raises, for history rows)."""
        field = self.owner_field
        if field is None:
            return "no owner"
        try:
            owner = getattr(self, field)
        except ObjectDoesNotExist:
            return f"{field} {getattr(self, f'{field}_id')} (deleted)"
        return str(owner) if field == "carrier" else f"{field} {owner}"

    def state(self, now: datetime | None = None, in_force_id: int | None = None) -> DeckState:
        """Past, in force or future at `now`; `in_force_id` saves the query when known."""
        now = now or timezone.now()
        if self.effective_from is None or self.effective_from > now:
            return DeckState.FUTURE
        if in_force_id is None:
            field = self.owner_field
            current = RateDeck.objects.filter(**{f"{field}_id": self.owner_id})
            current = current.filter(effective_from__lte=now).order_by("-effective_from")
            in_force_id = current.values_list("pk", flat=True).first()
        return DeckState.IN_FORCE if in_force_id == self.pk else DeckState.PAST


class Rate(models.Model):
    """The price of numbers under one prefix, in its deck's currency (vendor or sell)."""

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

    tenant_path = "deck__tenant"

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
