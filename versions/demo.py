"""Demo data for versions: Globex's Standard plan staged, with route tests, a sample of
real decisions and an unpublished draft change, so the Versions page has something to
show (the diff, the tests, the impact on recent calls). Idempotent."""

from __future__ import annotations

import datetime as dt
import random

from django.db import transaction
from django.utils import timezone

from routing.models import Customer, DialPrefix, RouteTarget, RoutingPlan, Trunk
from routing.resolver import CallRequest
from routing.service import decide
from tenants.models import Tenant
from versions.decisions import sample_of
from versions.models import DecisionSample, RouteTest
from versions.publishing import publish

NUMBERS = ("4930", "4989", "4915", "331", "336", "4420", "1212", "88213")


def seed_versions(tenant: Tenant, *, plan_name: str = "Standard", calls: int = 300) -> int:
    """Stage the plan (version 1), add its route tests, sample `calls` decisions over the
    last three hours, and leave a draft change; returns the samples written (0 when the
    plan was staged already)."""
    plan = RoutingPlan.objects.filter(tenant=tenant, name=plan_name).first()
    if plan is None or plan.published_version is not None:
        return 0
    customer = Customer.objects.filter(tenant=tenant, plan=plan, is_default=True).first()
    with transaction.atomic():
        RouteTest.objects.get_or_create(
            plan=plan,
            name="Germany tries Meridian first",
            defaults={
                "tenant": tenant,
                "customer": customer,
                "callee": "4989123456",
                "expect_outcome": "routed",
                "expect_first_trunk": "mer-a",
            },
        )
        RouteTest.objects.get_or_create(
            plan=plan,
            name="International networks are refused",
            defaults={
                "tenant": tenant,
                "customer": customer,
                "callee": "882123456",
                "expect_outcome": "rejected",
                "expect_code": 403,
            },
        )
        publish(plan, comment="Demo: the first published version")
    rng = random.Random(7)  # noqa: S311 (the same made-up demo every time)
    now = timezone.now()
    samples = []
    for _ in range(calls):
        number = rng.choice(NUMBERS) + f"{rng.randrange(10**6):06d}"
        at = now - dt.timedelta(seconds=rng.uniform(0, 3 * 3600))
        request = CallRequest(tenant=tenant.slug, customer=customer.name, callee=number, at=at)
        samples.append(sample_of(at.timestamp(), request, decide(request), "demo"))
    DecisionSample.objects.bulk_create(samples, ignore_conflicts=True)
    # An unpublished change: Berlin (4930) through Harbor's second trunk.
    berlin, _ = DialPrefix.objects.get_or_create(
        tenant=tenant, plan=plan, prefix="4930", defaults={"description": "Berlin"}
    )
    trunk = Trunk.objects.get(carrier__tenant=tenant, name="hb-2")
    RouteTarget.objects.get_or_create(prefix=berlin, trunk=trunk, defaults={"priority": 1})
    return len(samples)
