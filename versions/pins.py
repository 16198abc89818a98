"""Which version of a plan's routes a simulation, a route test or a replay reads.

Each function returns a routing.simulation.Pin: given a plan's id and the version
calls use, the version to read (None: the draft, the routes as saved).
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from routing.models import RoutingPlan
from routing.simulation import Pin, SimulationRefused
from versions.models import PlanVersion


def draft(plan_id: int) -> Pin:
    """That plan's draft; every other plan as calls have it."""
    return lambda pinned, live: None if pinned == plan_id else live


def every_draft(plan_id: int, live: int | None) -> int | None:
    """Whichever plan the call reaches: its draft (a Pin itself)."""
    return None


def every_plan_at(number: int) -> Pin:
    """Whichever plan the call reaches: its kept version `number`. A plan without it is
    refused only if the call reaches it (routing.simulation.PinnedTable defers it)."""

    def pin(plan_id: int, live: int | None) -> int | None:
        if not PlanVersion.objects.filter(plan_id=plan_id, number=number).exists():
            raise SimulationRefused(_not_kept(plan_id, f"version {number} kept"))
        return number

    return pin


def for_simulation(
    *, routes: str | int | None, when: datetime | None, plan_id: int | None
) -> Pin | None:
    """The pin of a simulation: `routes` "draft" or a version number (of the plan when
    the simulation names it, else of whichever plan the call reaches), or every staged
    plan as published at `when`; None: live, as calls get it."""
    if when is not None:
        return as_of(when)
    if routes in (None, "live"):
        return None
    if routes == "draft":
        return draft(plan_id) if plan_id is not None else every_draft
    number = int(routes)
    return version(plan_id, number) if plan_id is not None else every_plan_at(number)


def version(plan_id: int, number: int) -> Pin:
    """That plan's kept version `number`; every other plan as calls have it."""

    def pin(pinned: int, live: int | None) -> int | None:
        if pinned != plan_id:
            return live
        if not PlanVersion.objects.filter(plan_id=plan_id, number=number).exists():
            raise SimulationRefused(_not_kept(plan_id, f"version {number} kept"))
        return number

    return pin


def as_of(when: datetime) -> Pin:
    """Every staged plan as published at `when` (the version in force then)."""

    def pin(plan_id: int, live: int | None) -> int | None:
        if live is None:
            return None  # not staged: its routes as saved are all there is
        found = (
            PlanVersion.objects.filter(plan_id=plan_id, published_at__lte=when)
            .order_by("-number")
            .values_list("number", flat=True)
            .first()
        )
        if found is None:
            raise SimulationRefused(_not_kept(plan_id, f"version in force at {_moment(when)}"))
        return found

    return pin


def _moment(when: datetime) -> str:
    return timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S %Z")


def _not_kept(plan_id: int, wanted: str) -> str:
    kept = PlanVersion.objects.filter(plan_id=plan_id).order_by("number")
    oldest, latest = kept.first(), kept.last()
    plan = RoutingPlan.objects.filter(pk=plan_id).first()
    if oldest is None:
        return f"Plan {plan} has no published version: simulate its live routes instead."
    return (
        f"Plan {plan} has no {wanted} (kept: versions {oldest.number} to {latest.number}, "
        f"the oldest published {_moment(oldest.published_at)})."
    )
