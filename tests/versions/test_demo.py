"""The demo's staged plan: something to see on the Versions page, seeded once."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from routing.models import RoutingPlan
from versions.impact import preview
from versions.models import DecisionSample, PlanVersion
from versions.publishing import DRAFT, diff, publish

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_stages_a_plan_with_tests_samples_and_a_draft_change(capsys):
    call_command("seed_demo")
    assert "300 sampled decisions" in capsys.readouterr().out
    plan = RoutingPlan.objects.get(tenant__slug="globex", name="Standard")
    assert plan.published_version == 1
    assert [row.prefix for row in diff(plan, 1, DRAFT).rows] == ["4930"]
    impact = preview(plan)
    assert impact.replayed == 300
    assert impact.first_trunk_changed > 0
    assert {change.live.routes[0].trunk for change in impact.examples} == {"mer-a"}
    call_command("seed_demo")
    assert "0 sampled decisions" in capsys.readouterr().out
    assert DecisionSample.objects.count() == 300
    # The draft passes the demo's route tests: it can be published as it is.
    assert publish(plan).version.number == 2
    assert PlanVersion.objects.filter(plan=plan).count() == 2
