"""Versions of a staged routing plan, the route tests that guard its publishes, and the
sample of real decisions that previews a publish's impact.

The published routes themselves are routing.models.PublishedRoute (the engine reads
them); this app keeps what operators work with around them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from routing import validators
from routing.models import Customer, RoutingPlan
from routing.resolver import Outcome
from tenants.models import Tenant


class PlanVersion(models.Model):
    """One published version of a plan's routes: who published it, when, why, what changed.

    Numbers count up from 1 per plan; a rollback is a new number whose routes are an
    older version's (`source`). Only the last ROUTING_VERSIONS_KEEP are kept.
    """

    class Kind(models.TextChoices):
        PUBLISH = "publish", "publish"
        ROLLBACK = "rollback", "rollback"

    plan = models.ForeignKey(RoutingPlan, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PUBLISH)
    source = models.PositiveIntegerField(
        null=True, blank=True, help_text="A rollback: the version whose routes it republished."
    )
    published_at = models.DateTimeField(default=timezone.now, db_index=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    published_by_name = models.CharField(max_length=150, blank=True)
    comment = models.TextField(blank=True)
    routes = models.PositiveIntegerField(default=0, help_text="Routes in this version.")
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    forced = models.BooleanField(
        default=False, help_text="Published although route tests failed (by a user allowed to)."
    )
    failed_tests = models.TextField(blank=True, help_text="The tests that failed, when forced.")
    seconds = models.FloatField(default=0)

    tenant_path = "plan__tenant"

    class Meta:
        ordering = ["plan", "-number"]
        permissions = [
            ("publish_planversion", "Can publish and roll back routing plans"),
            ("force_publish_planversion", "Can publish although route tests fail"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "number"],
                name="planversion_number_unique_per_plan",
                violation_error_message="This plan already has a version with this number.",
            ),
            models.CheckConstraint(
                condition=Q(number__gte=1),
                name="planversion_number_positive",
                violation_error_message="Version numbers start at 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} v{self.number}"


class RouteTest(models.Model):
    """A saved call and what it must get, run on demand and before every publish of its plan.

    The call is simulated by its customer, or its source address, or else by the plan
    itself (without a customer), with a fixed Call-ID so weighted orders repeat.
    Every expectation left empty is not checked.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="route_tests")
    plan = models.ForeignKey(
        RoutingPlan,
        on_delete=models.CASCADE,
        related_name="route_tests",
        help_text="The plan whose publishes this test guards.",
    )
    name = models.CharField(max_length=100, help_text="Unique within the plan.")
    customer = models.ForeignKey(
        Customer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Whose call it is. Empty: the source address decides, or else the plan.",
    )
    source_ip = models.GenericIPAddressField(
        null=True, blank=True, help_text="The call's source address (instead of a customer)."
    )
    caller = models.CharField(
        max_length=64, blank=True, validators=[validators.validate_no_line_breaks]
    )
    callee = models.CharField(max_length=64, validators=[validators.validate_no_line_breaks])
    at = models.DateTimeField(
        null=True, blank=True, help_text="The call's time (schedules). Empty: when the test runs."
    )
    expect_outcome = models.CharField(
        max_length=16,
        blank=True,
        choices=[(o.value, o.value.replace("_", " ")) for o in Outcome if o is not Outcome.ERROR],
        help_text="The outcome the call must get (routed, rejected, no route...).",
    )
    expect_code = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(100), MaxValueValidator(699)],
        help_text="The SIP code of the answer (200 when routed).",
    )
    expect_first_trunk = models.CharField(
        max_length=100, blank=True, help_text="The trunk tried first, by name."
    )
    expect_trunk_order = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Every trunk in order, by name, separated by commas (e.g. 'lon-1, par-1').",
    )
    is_active = models.BooleanField(default=True, help_text="Untick to skip it before publishing.")
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_passed = models.BooleanField(null=True, blank=True, editable=False)
    last_message = models.TextField(blank=True, editable=False)

    tenant_path = "tenant"

    class Meta:
        ordering = ["plan", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "name"],
                name="routetest_name_unique_per_plan",
                violation_error_message="This plan already has a route test with this name.",
            ),
            models.CheckConstraint(
                condition=Q(customer__isnull=True) | Q(source_ip__isnull=True),
                name="routetest_customer_or_source",
                violation_error_message="A route test's call is a customer's or from a source "
                "address, not both.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def trunk_order(self) -> list[str]:
        return [name.strip() for name in self.expect_trunk_order.split(",") if name.strip()]

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.customer_id and self.source_ip:
            errors["source_ip"] = "Give a customer or a source address, not both."
        if self.plan_id and self.tenant_id:
            if self.plan.tenant_id != self.tenant_id:
                errors["plan"] = "Pick a routing plan of the test's tenant."
            elif self.customer_id and self.customer.tenant_id != self.tenant_id:
                errors["customer"] = "Pick a customer of the test's tenant."
        if self.tenant_id and not errors:
            from routing.models import Trunk

            known = set(
                Trunk.objects.filter(carrier__tenant_id=self.tenant_id).values_list(
                    "name", flat=True
                )
            )
            if self.expect_first_trunk and self.expect_first_trunk not in known:
                errors["expect_first_trunk"] = (
                    f"No trunk of this tenant is named {self.expect_first_trunk!r}."
                )
            unknown = [name for name in self.trunk_order() if name not in known]
            if unknown:
                errors["expect_trunk_order"] = (
                    "No trunk of this tenant is named "
                    + ", ".join(repr(name) for name in unknown)
                    + "."
                )
        if errors:
            raise ValidationError(errors)


class DecisionSample(models.Model):
    """A real routing decision the engine recorded (a sample: ROUTING_DECISION_SAMPLE_PERCENT).

    Kept ROUTING_DECISION_RETENTION_HOURS, to preview a publish's impact on recent
    calls and to look a decision up by the id Kamailio logs (`decision_id`).
    """

    decision_id = models.CharField(max_length=64, unique=True)
    decided_at = models.DateTimeField(db_index=True)
    # No database constraints: the engine's writer threads insert samples all the time,
    # and a foreign key would make each insert lock the tenant and plan tables too
    # (PostgreSQL's key-share locks), so a TRUNCATE or a bulk rewrite of those tables
    # could deadlock with a log row. Django still cascades and nulls on delete.
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    plan = models.ForeignKey(
        RoutingPlan,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    plan_version = models.PositiveIntegerField(null=True, blank=True)
    transport = models.CharField(max_length=16, blank=True)
    request = models.JSONField(default=dict, help_text="The call as the engine read it.")
    outcome = models.CharField(max_length=16)
    code = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=100, blank=True)
    first_trunk_id = models.BigIntegerField(null=True, blank=True)
    trunks = models.JSONField(default=list, help_text="The trunks in order, by name.")
    trace = models.JSONField(default=list)

    tenant_path = "tenant"

    class Meta:
        ordering = ["-decided_at"]
        indexes = [
            models.Index(fields=["plan", "decided_at"], name="decisionsample_plan_time"),
            models.Index(fields=["tenant", "decided_at"], name="decisionsample_tenant_time"),
        ]

    def __str__(self) -> str:
        return f"{self.decision_id} {self.outcome} {self.code}"
