"""Blocklists: caller numbers, callee numbers or source networks whose calls are refused.

A list belongs to a tenant and, optionally, to one of its customers (then it applies
to that customer's calls only). A call that matches an active list's entry is
refused with the list's SIP code and reason before its route is matched (the
resolver's screen, blocklists.lookup). Lists can hold a million entries: entries are
imported in bulk (blocklists.importing) and only the list keeps a change history.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from blocklists import values
from routing.models import Customer
from tenants.models import Tenant


class Kind(models.TextChoices):
    CALLER = values.CALLER, "caller numbers"
    CALLEE = values.CALLEE, "callee numbers"
    SOURCE = values.SOURCE, "source addresses"


class Match(models.TextChoices):
    EXACT = values.EXACT, "exact number"
    PREFIX = values.PREFIX, "prefix"
    NETWORK = values.NETWORK, "network"


class Blocklist(models.Model):
    """A named list of a tenant (or of one of its customers) whose matching calls are refused."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="blocklists")
    customer = models.ForeignKey(
        Customer,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="blocklists",
        help_text="Empty: every call of the tenant. Else only this customer's calls.",
    )
    name = models.CharField(max_length=100, help_text="Unique in the tenant, e.g. Fraud.")
    kind = models.CharField(
        max_length=6,
        choices=Kind.choices,
        help_text="What the entries are matched against: the caller's number, the "
        "callee's number or the call's source address.",
    )
    reply_code = models.PositiveSmallIntegerField(
        default=403,
        validators=[MinValueValidator(400), MaxValueValidator(699)],
        help_text="SIP code a blocked call is refused with (400-699).",
    )
    reply_reason = models.CharField(
        max_length=100, default="Blocked", help_text="SIP reason phrase sent with the code."
    )
    is_active = models.BooleanField(default=True, help_text="An inactive list blocks nothing.")
    description = models.TextField(blank=True)
    entries_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="Number of entries (kept by the services)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["entries_count", "updated_at"])

    tenant_path = "tenant"

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="blocklist_name_unique_per_tenant",
                violation_error_message="This tenant already has a blocklist with this name.",
            ),
            models.CheckConstraint(
                condition=Q(reply_code__gte=400, reply_code__lte=699),
                name="blocklist_reply_code_4xx_6xx",
                violation_error_message="A blocked call is refused with a code from 400 to 699.",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=Kind.values),
                name="blocklist_kind_valid",
                violation_error_message="A blocklist holds caller, callee or source entries.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        super().clean()
        if (
            self.customer_id is not None
            and self.tenant_id is not None
            and self.customer.tenant_id != self.tenant_id
        ):
            raise ValidationError({"customer": "Pick a customer of this tenant."})
        if self.pk is not None and self.kind:
            before = Blocklist.objects.filter(pk=self.pk).values_list("kind", flat=True).first()
            if before and before != self.kind and self.entries.exists():
                raise ValidationError(
                    {"kind": "A list with entries keeps its kind: empty it first."}
                )
        if self.reply_reason and not self.reply_reason.isprintable():
            raise ValidationError({"reply_reason": "Use printable characters only."})


class BlocklistEntry(models.Model):
    """One number, prefix or network of a blocklist."""

    list = models.ForeignKey(Blocklist, on_delete=models.CASCADE, related_name="entries")
    value = models.CharField(
        max_length=values.MAX_VALUE,
        help_text="Digits of a number or prefix (caller and callee lists), "
        "or a network such as 192.0.2.0/24 (source lists).",
    )
    match = models.CharField(
        max_length=7,
        choices=Match.choices,
        default=Match.EXACT,
        help_text="Numbers: the exact number or a prefix. Source lists: network.",
    )

    tenant_path = "list__tenant"

    class Meta:
        ordering = ["list", "value"]
        verbose_name_plural = "blocklist entries"
        constraints = [
            models.UniqueConstraint(
                fields=["list", "value"],
                name="blocklistentry_value_unique_per_list",
                violation_error_message="This list already has this entry.",
            ),
            models.CheckConstraint(
                condition=Q(match__in=Match.values),
                name="blocklistentry_match_valid",
                violation_error_message="An entry matches exact, prefix or network.",
            ),
        ]

    def __str__(self) -> str:
        return self.value + ("*" if self.match == Match.PREFIX else "")

    def clean(self) -> None:
        super().clean()
        if self.list_id is None:
            return
        try:
            self.value, self.match = values.entry_value(self.list.kind, self.value, self.match)
        except values.BadValue as exc:
            raise ValidationError({"value": str(exc)}) from None
