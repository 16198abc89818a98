"""The impact preview: what publishing a plan's draft would change for real calls.

The engine keeps a sample of its decisions (versions.decisions). A preview asks each
recent sample of the plan's calls again, at the time it was made, once as calls get it
now (the live version) and once against the draft, and counts the calls whose outcome
(or SIP code) or first trunk would change. Both answers are made now, with the same
trunk states, so what differs is the draft, not what happened to the trunks since.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from routing.models import RoutingPlan
from routing.resolver import Decision
from routing.service import decide, get_route_table
from routing.simulation import OwnTenantTable, PinnedTable
from versions import pins
from versions.decisions import request_from
from versions.models import DecisionSample

DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class Changed:
    """One sampled call whose answer the draft would change."""

    sample: DecisionSample
    live: Decision
    draft: Decision
    what: str  # "outcome" or "first trunk"

    def describe(self, decision: Decision) -> str:
        if decision.routes:
            return f"{decision.code} via {decision.routes[0].trunk}"
        return f"{decision.code} {decision.reason}"


@dataclass
class Impact:
    """How many of the replayed calls would change, and some of them."""

    plan: RoutingPlan
    replayed: int = 0
    outcome_changed: int = 0
    first_trunk_changed: int = 0
    examples: list[Changed] = field(default_factory=list)
    oldest: object = None  # when the oldest replayed call was made

    @property
    def changed(self) -> int:
        return self.outcome_changed + self.first_trunk_changed


def _first_trunk(decision: Decision) -> int | None:
    return decision.routes[0].trunk_id if decision.routes else None


def preview(plan: RoutingPlan, *, limit: int = DEFAULT_LIMIT, examples: int = 20) -> Impact:
    """Replay the plan's latest `limit` sampled calls against its draft and live version."""
    impact = Impact(plan=plan)
    samples = list(DecisionSample.objects.filter(plan=plan).order_by("-decided_at")[:limit])
    if not samples:
        return impact
    inner = get_route_table()
    live = OwnTenantTable(inner, plan.tenant_id)
    draft = OwnTenantTable(PinnedTable(inner, pins.draft(plan.pk)), plan.tenant_id)
    for sample in samples:
        request = request_from(sample.request)
        if request.at is None:
            request = dataclasses.replace(request, at=sample.decided_at)
        before, after = decide(request, table=live), decide(request, table=draft)
        impact.replayed += 1
        what = ""
        if (before.outcome, before.code) != (after.outcome, after.code):
            impact.outcome_changed += 1
            what = "outcome"
        elif _first_trunk(before) != _first_trunk(after):
            impact.first_trunk_changed += 1
            what = "first trunk"
        if what and len(impact.examples) < examples:
            impact.examples.append(Changed(sample, before, after, what))
    impact.oldest = samples[-1].decided_at
    return impact
