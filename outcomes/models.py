"""Quality figures per minute: one bucket per (tenant, minute, trunk, prefix, customer)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from routing.models import Trunk
from tenants.models import Tenant


class OutcomeBucket(models.Model):
    """One minute of attempts on one trunk for one matched prefix and customer.

    Every count is a sum, so buckets written by several processes merge by addition
    (outcomes.store upserts them). ASR = answered / attempts; ACD = duration_s_sum /
    ended; NER and SIP code counts come from the `code` counts, the post-dial delay
    percentiles from the `pdd` histogram (outcomes.records.PDD_BOUNDS_MS).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="outcome_buckets")
    minute = models.DateTimeField(help_text="The minute (UTC, seconds zero) of the events.")
    trunk = models.ForeignKey(
        Trunk, null=True, blank=True, on_delete=models.SET_NULL, related_name="outcome_buckets"
    )
    # The trunk's id when the event came (0: not given), kept after the trunk is deleted:
    # it is part of the bucket's key, and a NULL cannot be (NULLs never conflict).
    trunk_key = models.PositiveBigIntegerField(default=0)
    trunk_name = models.CharField(max_length=200, blank=True)
    carrier_name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=200, blank=True, help_text="The matched prefix.")
    customer = models.CharField(max_length=200, blank=True, help_text="The customer's name.")
    attempts = models.PositiveIntegerField(default=0)
    answered = models.PositiveIntegerField(default=0)
    failed_4xx = models.PositiveIntegerField(default=0)
    failed_5xx = models.PositiveIntegerField(default=0)
    failed_6xx = models.PositiveIntegerField(default=0)
    failed_other = models.PositiveIntegerField(default=0, help_text="1xx or 3xx finals.")
    ended = models.PositiveIntegerField(default=0, help_text="Answered calls that ended.")
    duration_s_sum = models.FloatField(default=0.0)
    pdd_count = models.PositiveIntegerField(default=0)
    pdd_ms_sum = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "minute", "trunk_key", "prefix", "customer"],
                name="outcomebucket_unique_key",
                violation_error_message="This minute already has a bucket for this key.",
            ),
            models.CheckConstraint(
                condition=Q(
                    attempts__gte=F("answered")
                    + F("failed_4xx")
                    + F("failed_5xx")
                    + F("failed_6xx")
                    + F("failed_other")
                ),
                name="outcomebucket_outcomes_within_attempts",
                violation_error_message="Answered and failed attempts exceed the attempts.",
            ),
            models.CheckConstraint(
                condition=Q(duration_s_sum__gte=0) & Q(pdd_ms_sum__gte=0),
                name="outcomebucket_sums_not_negative",
                violation_error_message="Sums of durations and delays cannot be negative.",
            ),
        ]
        indexes = [models.Index(fields=["minute"], name="outcomebucket_minute")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.trunk_name or '-'} {self.prefix or '-'}"


class OutcomeCount(models.Model):
    """A count in a bucket: of a final SIP code, or of a post-dial delay histogram bucket."""

    class Kind(models.TextChoices):
        CODE = "code", "SIP code"
        PDD = "pdd", "post-dial delay up to (ms, 0: above the last bound)"

    bucket = models.ForeignKey(OutcomeBucket, on_delete=models.CASCADE, related_name="counts")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.PositiveIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bucket", "kind", "value"],
                name="outcomecount_unique_per_bucket",
                violation_error_message="This bucket already counts this value.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.value}: {self.count}"
