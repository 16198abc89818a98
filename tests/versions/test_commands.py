"""manage.py plan_versions: list, diff, publish, rollback and test from the shell."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command

from routing.models import RouteTarget
from tests.factories import default_plan, make_operator, make_route
from versions.models import PlanVersion, RouteTest
from versions.publishing import publish

pytestmark = pytest.mark.django_db

PLAN = ["--tenant", "tenant-a", "--plan", "Default"]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("plan_versions", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def staged(tenant_a, trunks_a, route_a):
    plan = default_plan(tenant_a)
    publish(plan, comment="first")
    plan.refresh_from_db()
    return plan


def swap_targets(route) -> None:
    first, second = route.targets.order_by("priority")
    RouteTarget.objects.filter(pk=first.pk).update(priority=2)
    RouteTarget.objects.filter(pk=second.pk).update(priority=1)


def test_list_shows_the_live_version_and_the_kept_ones(staged, route_a, operator_a):
    swap_targets(route_a)
    publish(staged, user=operator_a, comment="swap")

    out = run("list", *PLAN)

    lines = out.splitlines()
    assert lines[0] == "tenant-a / Default: live version 2"
    assert lines[1].startswith("  * v2  publish  ")
    assert "by operator-a  1 routes (+0 -0 ~1)  'swap'" in lines[1]
    assert lines[2].startswith("    v1  publish  ")
    assert "by system" in lines[2]


def test_list_says_when_a_plan_is_not_staged(tenant_a, route_a):
    assert run("list", *PLAN).strip() == ("tenant-a / Default: not staged (routes live as saved)")


def test_diff_shows_the_draft_against_the_live_version(staged, route_a, tenant_a, trunks_a):
    swap_targets(route_a)
    make_route(tenant_a, "44", trunks_a[1])

    out = run("diff", *PLAN)

    lines = out.splitlines()
    assert lines[0] == "tenant-a / Default: version 1 → the draft: 1 added, 0 removed, 1 changed"
    assert lines[1] == (
        "  ~ 33  targets: Carrier A/a-primary (1, 100) → Carrier A/a-backup (2, 100) ⇒ "
        "Carrier A/a-backup (1, 100) → Carrier A/a-primary (2, 100)"
    )
    assert lines[2] == "  + 44  Carrier A/a-backup (1, 100)"
    limited = run("diff", *PLAN, "--from", "1", "--to", "draft", "--limit", "1")
    assert limited.splitlines()[-1] == "  … and 1 more (raise --limit)"


def test_publish_and_rollback_switch_the_version(staged, route_a, operator_a):
    swap_targets(route_a)

    published = run("publish", *PLAN, "--comment", "swap", "--user", "operator-a")
    rolled_back = run("rollback", *PLAN, "--to", "1", "--comment", "bad")

    assert published.strip() == (
        "tenant-a / Default: published version 2: 0 added, 0 removed, 1 changed."
    )
    assert rolled_back.strip() == (
        "tenant-a / Default: version 3 has the routes of version 1: 0 added, 0 removed, 1 changed."
    )
    versions = PlanVersion.objects.filter(plan=staged).order_by("number")
    assert [(v.number, v.kind, v.published_by_name) for v in versions] == [
        (1, "publish", ""),
        (2, "publish", "operator-a"),
        (3, "rollback", ""),
    ]
    staged.refresh_from_db()
    assert staged.published_version == 3


def test_test_runs_the_plans_route_tests(staged, route_a, tenant_a):
    RouteTest.objects.create(
        tenant=tenant_a, plan=staged, name="first", callee="331", expect_first_trunk="a-primary"
    )
    swap_targets(route_a)

    live = run("test", *PLAN, "--against", "live")
    with pytest.raises(CommandError, match=r"^1 of 1 route tests failed\.$"):
        run("test", *PLAN)

    assert live.splitlines() == [
        "tenant-a / Default: 1 route tests against as calls get it",
        "  PASS first",
    ]
    assert RouteTest.objects.get().last_passed is False


def test_a_publish_past_failing_tests_needs_an_allowed_user(staged, route_a, tenant_a):
    RouteTest.objects.create(
        tenant=tenant_a, plan=staged, name="first", callee="331", expect_first_trunk="a-primary"
    )
    swap_targets(route_a)
    lead = make_operator("lead", tenant_a)
    lead.user_permissions.add(Permission.objects.get(codename="force_publish_planversion"))

    with pytest.raises(CommandError, match="1 route test of plan Default failed"):
        run("publish", *PLAN)
    with pytest.raises(CommandError, match="you may not force a publish"):
        run("publish", *PLAN, "--force")
    out = run("publish", *PLAN, "--force", "--user", "lead")

    assert "FAIL first: expected first trunk a-primary, got a-backup" in out
    assert "published version 2 (forced past failing route tests)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--tenant", "nope", "--plan", "Default"], "No tenant has the slug 'nope'."),
        (
            ["list", "--tenant", "tenant-a", "--plan", "Other"],
            "Tenant tenant-a has no routing plan named 'Other' (plans: Default).",
        ),
        (["diff", *PLAN, "--from", "abc"], "--from is 'draft', 'live' or a version number"),
        (["diff", *PLAN, "--to", "9"], "Plan Default has no version 9 (kept: 1 to 1)."),
        (["publish", *PLAN], "Nothing to publish: the draft of plan Default is the same"),
        (["publish", *PLAN, "--user", "ghost"], "No user is named 'ghost'."),
        (
            ["publish", *PLAN, "--user", "outsider"],
            "User outsider does not operate tenant tenant-a.",
        ),
        (["publish", *PLAN, "--expected", "7"], "Plan Default is at version 1 now: it was"),
        (["rollback", *PLAN, "--to", "1"], "Plan Default is at version 1 already."),
        (["rollback", *PLAN, "--to", "5"], "Plan Default has no version 5 (kept: 1 to 1)."),
        (["test", *PLAN, "--against", "4"], "Plan Default has no version 4"),
    ],
)
def test_every_refusal_is_a_command_error(staged, outsider, args, message):
    with pytest.raises(CommandError) as refused:
        run(*args)

    assert str(refused.value).startswith(message), str(refused.value)


def test_live_on_an_unstaged_plan_is_refused(tenant_a, route_a):
    with pytest.raises(CommandError, match="Plan Default is not staged"):
        run("diff", *PLAN)


def test_discard_brings_the_draft_back_to_the_live_version(staged, route_a):
    route_a.description = "edited"
    route_a.save()
    assert "discarded the draft (0 added, 0 removed, 1 changed)" in run(
        "discard", "--tenant", "tenant-a", "--plan", "Default"
    )
    with pytest.raises(CommandError, match="Nothing to discard"):
        run("discard", "--tenant", "tenant-a", "--plan", "Default")
