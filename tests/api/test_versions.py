"""The API of staged plans: versions, diff, publish, rollback, route tests, impact, decisions.

Tenant A's plan is staged by the fixture `staged` (version 1: 33 to a-primary, then
a-backup); tenant B's operator (`outsider`) must get a 404 for every one of A's URLs.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from api.models import issue_user_token
from routing.models import Customer, DialPrefix, RouteTarget
from routing.resolver import CallRequest
from routing.service import decide
from tenants.models import User
from tests.api.conftest import call_body
from tests.factories import default_plan, make_operator, make_route
from versions.models import DecisionSample, PlanVersion, RouteTest
from versions.publishing import publish

pytestmark = pytest.mark.django_db

PLANS = "/api/v1/routing-plans/"


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_user_token(user=user)[0]}")
    return client


@pytest.fixture
def staged(tenant_a, trunks_a, route_a):
    plan = default_plan(tenant_a)
    publish(plan, comment="first")
    plan.refresh_from_db()
    return plan


@pytest.fixture
def api_a(operator_a) -> APIClient:
    return api_as(operator_a)


def swap_targets(route) -> None:
    """Edit the draft: a-backup first."""
    first, second = route.targets.order_by("priority")
    RouteTarget.objects.filter(pk=first.pk).update(priority=2)
    RouteTarget.objects.filter(pk=second.pk).update(priority=1)


def live_first_trunk(number: str = "33123456789") -> str:
    decision = decide(CallRequest(callee=number, source_ip="192.0.2.10", call_id="c1"))
    return decision.routes[0].trunk if decision.routes else ""


def with_perms(user: User, *codenames: str) -> User:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return User.objects.get(pk=user.pk)  # a fresh permission cache


def make_test(plan, **fields) -> RouteTest:
    fields.setdefault("name", "France goes to a-primary")
    fields.setdefault("callee", "33123456789")
    return RouteTest.objects.create(tenant=plan.tenant, plan=plan, **fields)


# --- Versions -------------------------------------------------------------------------


def test_an_unstaged_plan_has_no_versions(api_a, tenant_a, route_a):
    plan = default_plan(tenant_a)

    answer = api_a.get(f"{PLANS}{plan.pk}/versions")

    assert answer.status_code == 200
    assert answer.json() == {"published_version": None, "versions": []}


def test_it_lists_the_kept_versions_newest_first(api_a, staged, route_a, operator_a):
    swap_targets(route_a)
    publish(staged, user=operator_a, comment="a-backup first")

    answer = api_a.get(f"{PLANS}{staged.pk}/versions").json()

    assert answer["published_version"] == 2
    newest, oldest = answer["versions"]
    assert (newest["number"], newest["kind"], newest["comment"]) == (2, "publish", "a-backup first")
    assert (newest["published_by_name"], newest["changed"], newest["routes"]) == (
        "operator-a",
        1,
        1,
    )
    assert (oldest["number"], oldest["added"], oldest["forced"]) == (1, 1, False)
    assert set(newest) >= {"source", "published_at", "removed", "failed_tests"}


# --- Diff -------------------------------------------------------------------------------


def test_the_diff_shows_an_edit_of_the_draft(api_a, staged, route_a, trunks_a, tenant_a):
    swap_targets(route_a)
    make_route(tenant_a, "44", trunks_a[1])

    answer = api_a.get(f"{PLANS}{staged.pk}/diff")

    body = answer.json()
    assert answer.status_code == 200, body
    assert (body["from"], body["to"]) == (1, None)
    assert (body["added"], body["removed"], body["changed"], body["truncated"]) == (1, 0, 1, False)
    by_prefix = {row["prefix"]: row for row in body["rows"]}
    changed = by_prefix["33"]
    assert changed["change"] == "changed"
    assert changed["changed_columns"] == ["targets"]
    assert changed["old_targets"] == "Carrier A/a-primary (1, 100) → Carrier A/a-backup (2, 100)"
    assert changed["new_targets"] == "Carrier A/a-backup (1, 100) → Carrier A/a-primary (2, 100)"
    assert changed["old"]["prefix"] == changed["new"]["prefix"] == "33"
    assert changed["new"]["is_active"] is True
    assert (changed["caller_prefix"], changed["caller_pattern"], changed["schedule_id"]) == (
        "",
        "",
        None,
    )
    added = by_prefix["44"]
    assert (added["change"], added["old"], added["old_targets"]) == ("added", None, "")
    assert added["new_targets"] == "Carrier A/a-backup (1, 100)"


def test_the_diff_between_versions_and_its_limit(api_a, staged, route_a, tenant_a, trunks_a):
    swap_targets(route_a)
    make_route(tenant_a, "44", trunks_a[1])
    publish(staged)

    between = api_a.get(f"{PLANS}{staged.pk}/diff", {"from": "2", "to": "1"}).json()
    limited = api_a.get(f"{PLANS}{staged.pk}/diff", {"from": 1, "to": "live", "limit": 1})

    assert (between["added"], between["removed"], between["changed"]) == (0, 1, 1)
    assert limited.json()["truncated"] is True
    assert len(limited.json()["rows"]) == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "abc"}, "'from' is 'draft', 'live' or a version number (1 or more), not 'abc'."),
        ({"to": "0"}, "'to' is 'draft', 'live' or a version number (1 or more), not '0'."),
        ({"from": "9"}, "Plan Default has no version 9 (kept: 1 to 1)."),
        ({"to": str(10**30)}, "'to' is 'draft', 'live' or a version number"),
    ],
)
def test_a_bad_view_in_a_diff_is_a_400_saying_why(api_a, staged, params, message):
    answer = api_a.get(f"{PLANS}{staged.pk}/diff", params)

    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(message)


def test_the_live_version_of_an_unstaged_plan_is_a_400(api_a, tenant_a, route_a):
    plan = default_plan(tenant_a)

    answer = api_a.get(f"{PLANS}{plan.pk}/diff")

    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("Plan Default is not staged")


def test_a_bad_diff_limit_is_a_field_error(api_a, staged):
    answer = api_a.get(f"{PLANS}{staged.pk}/diff", {"limit": "0"})

    assert answer.status_code == 400
    assert "limit" in answer.json()


# --- Publish and rollback ---------------------------------------------------------------


def test_publishing_makes_the_draft_live(api_a, staged, route_a):
    swap_targets(route_a)
    assert live_first_trunk() == "a-primary"

    answer = api_a.post(
        f"{PLANS}{staged.pk}/publish",
        {"comment": "a-backup first", "expected_version": 1},
        format="json",
    )

    assert answer.status_code == 201, answer.json()
    assert answer.json() == {"version": 2, "added": 0, "removed": 0, "changed": 1, "tests": []}
    assert live_first_trunk() == "a-backup"
    version = PlanVersion.objects.get(plan=staged, number=2)
    assert (version.comment, version.published_by_name) == ("a-backup first", "operator-a")


def test_the_first_publish_stages_the_plan(api_a, tenant_a, route_a):
    plan = default_plan(tenant_a)

    answer = api_a.post(f"{PLANS}{plan.pk}/publish", {}, format="json")

    assert answer.status_code == 201
    assert (answer.json()["version"], answer.json()["added"]) == (1, 1)
    plan.refresh_from_db()
    assert plan.published_version == 1


def test_publishing_nothing_or_a_stale_review_is_a_409(api_a, staged, route_a):
    nothing = api_a.post(f"{PLANS}{staged.pk}/publish", {}, format="json")
    swap_targets(route_a)
    publish(staged)
    route_a.description = "again"
    route_a.save()
    stale = api_a.post(f"{PLANS}{staged.pk}/publish", {"expected_version": 1}, format="json")

    assert nothing.status_code == 409
    assert nothing.json() == {
        "detail": "Nothing to publish: the draft of plan Default is the same as version 1."
    }
    assert stale.status_code == 409
    assert "while you were looking at version 1" in stale.json()["detail"]
    assert PlanVersion.objects.filter(plan=staged).count() == 2


def test_a_user_without_the_publish_permission_gets_a_403(staged, route_a, tenant_a):
    viewer = with_perms(User.objects.create_user("viewer", tenant=tenant_a), "view_planversion")
    client = api_as(viewer)
    swap_targets(route_a)

    listed = client.get(f"{PLANS}{staged.pk}/versions")
    published = client.post(f"{PLANS}{staged.pk}/publish", {}, format="json")
    rolled_back = client.post(f"{PLANS}{staged.pk}/rollback", {"to": 1}, format="json")

    assert listed.status_code == 200
    assert (published.status_code, rolled_back.status_code) == (403, 403)
    assert published.json()["detail"] == "You may not publish or roll back routing plans."
    assert PlanVersion.objects.filter(plan=staged).count() == 1


def test_failing_route_tests_are_a_409_with_every_result(api_a, staged, route_a):
    make_test(staged, expect_first_trunk="a-primary")
    make_test(staged, name="France is routed", expect_outcome="routed")
    swap_targets(route_a)

    answer = api_a.post(f"{PLANS}{staged.pk}/publish", {}, format="json")

    body = answer.json()
    assert answer.status_code == 409
    assert body["detail"].startswith("1 route test of plan Default failed against the draft")
    by_name = {test["name"]: test for test in body["tests"]}
    assert by_name["France is routed"]["passed"] is True
    failed = by_name["France goes to a-primary"]
    assert failed["passed"] is False
    assert failed["message"] == "expected first trunk a-primary, got a-backup"
    assert (failed["outcome"], failed["code"]) == ("routed", 200)
    assert failed["trunks"] == ["a-backup", "a-primary"]


def test_forcing_needs_the_force_permission(api_a, staged, route_a, tenant_a):
    make_test(staged, expect_first_trunk="a-primary")
    swap_targets(route_a)
    lead = with_perms(make_operator("lead", tenant_a), "force_publish_planversion")

    refused = api_a.post(f"{PLANS}{staged.pk}/publish", {"force": True}, format="json")
    forced = api_as(lead).post(
        f"{PLANS}{staged.pk}/publish",
        {"force": True, "comment": "urgent"},
        format="json",
    )

    assert refused.status_code == 403
    assert "You may not force a publish" in refused.json()["detail"]
    assert forced.status_code == 201, forced.json()
    assert [test["passed"] for test in forced.json()["tests"]] == [False]
    version = PlanVersion.objects.get(plan=staged, number=2)
    assert version.forced
    assert "France goes to a-primary" in version.failed_tests


def test_a_rollback_switches_the_live_answer(api_a, staged, route_a, post_call):
    swap_targets(route_a)
    publish(staged)
    assert post_call().json()["rtjson"]["routes"][0]["uri"].endswith("@a-backup.example.net")

    answer = api_a.post(
        f"{PLANS}{staged.pk}/rollback",
        {"to": 1, "comment": "bad carrier", "expected_version": 2},
        format="json",
    )

    assert answer.status_code == 201, answer.json()
    assert answer.json() == {"version": 3, "added": 0, "removed": 0, "changed": 1, "tests": []}
    assert post_call().json()["rtjson"]["routes"][0]["uri"].endswith("@192.0.2.101:5060")
    assert live_first_trunk() == "a-primary"
    version = PlanVersion.objects.get(plan=staged, number=3)
    assert (version.kind, version.source, version.comment) == ("rollback", 1, "bad carrier")


def test_refused_rollbacks_are_409s(api_a, staged, tenant_a, trunks_b):
    unknown = api_a.post(f"{PLANS}{staged.pk}/rollback", {"to": 9}, format="json")
    same = api_a.post(f"{PLANS}{staged.pk}/rollback", {"to": 1}, format="json")
    missing = api_a.post(f"{PLANS}{staged.pk}/rollback", {}, format="json")

    assert (unknown.status_code, same.status_code, missing.status_code) == (409, 409, 400)
    assert unknown.json()["detail"] == "Plan Default has no version 9 (kept: 1 to 1)."
    assert same.json()["detail"] == "Plan Default is at version 1 already."
    assert "to" in missing.json()


# --- Route tests: run, and the resource -------------------------------------------------


def test_run_tests_against_the_draft_live_or_a_version(api_a, staged, route_a):
    test = make_test(staged, expect_first_trunk="a-primary")
    swap_targets(route_a)
    url = f"{PLANS}{staged.pk}/run-tests"

    draft = api_a.post(url, {}, format="json").json()
    live = api_a.post(url, {"against": "live"}, format="json").json()
    first = api_a.post(url, {"against": "1"}, format="json").json()

    assert draft["against"] is None
    assert draft["results"][0]["passed"] is False
    assert draft["results"][0]["trunks"] == ["a-backup", "a-primary"]
    assert (live["against"], live["results"][0]["passed"]) == (1, True)
    assert (first["against"], first["results"][0]["message"]) == (1, "passed")
    test.refresh_from_db()
    assert (test.last_passed, test.last_message) == (True, "passed")
    assert test.last_run_at is not None


@pytest.mark.parametrize(
    ("against", "message"),
    [
        ("abc", "'against' is 'draft', 'live' or a version number (1 or more), not 'abc'."),
        ("9", "Plan Default has no version 9 (kept: 1 to 1)."),
    ],
)
def test_run_tests_against_a_bad_view_is_a_400(api_a, staged, against, message):
    answer = api_a.post(f"{PLANS}{staged.pk}/run-tests", {"against": against}, format="json")

    assert answer.status_code == 400
    assert answer.json() == {"detail": message}


def test_an_operator_keeps_route_tests(api_a, staged, tenant_a):
    created = api_a.post(
        "/api/v1/route-tests",
        {
            "plan": staged.pk,
            "name": "France",
            "callee": "33123456789",
            "expect_outcome": "routed",
            "expect_trunk_order": "a-primary, a-backup",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    row = created.json()
    assert (row["tenant"], row["plan"], row["last_passed"]) == ("tenant-a", staged.pk, None)
    url = f"/api/v1/route-tests/{row['id']}"

    changed = api_a.patch(url, {"expect_first_trunk": "a-primary"}, format="json")
    listed = api_a.get("/api/v1/route-tests", {"plan": staged.pk}).json()
    fetched = api_a.get(url).json()
    deleted = api_a.delete(url)

    assert changed.status_code == 200, changed.json()
    assert [item["name"] for item in listed["results"]] == ["France"]
    assert fetched["expect_first_trunk"] == "a-primary"
    assert deleted.status_code == 204
    assert not RouteTest.objects.exists()


def test_a_route_test_naming_an_unknown_trunk_is_a_field_error(api_a, staged, trunks_b):
    answer = api_a.post(
        "/api/v1/route-tests",
        {
            "plan": staged.pk,
            "name": "France",
            "callee": "33",
            "expect_first_trunk": "b-primary",
            "expect_trunk_order": "a-primary, nope",
        },
        format="json",
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "expect_first_trunk": ["No trunk of this tenant is named 'b-primary'."],
        "expect_trunk_order": ["No trunk of this tenant is named 'nope'."],
    }


def test_a_duplicate_route_test_name_is_a_400(api_a, staged):
    make_test(staged, name="France")

    answer = api_a.post(
        "/api/v1/route-tests", {"plan": staged.pk, "name": "France", "callee": "33"}, format="json"
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "non_field_errors": ["This plan already has a route test with this name."]
    }


def test_another_tenants_plan_or_customer_reads_as_an_unknown_id(api_a, staged, tenant_b):
    plan_b = default_plan(tenant_b)
    customer_b = Customer.objects.get(tenant=tenant_b)
    unknown = 10**9

    answers = [
        api_a.post("/api/v1/route-tests", body, format="json").json()
        for body in (
            {"plan": plan_b.pk, "name": "x", "callee": "33"},
            {"plan": unknown, "name": "x", "callee": "33"},
            {"plan": staged.pk, "customer": customer_b.pk, "name": "x", "callee": "33"},
            {"plan": staged.pk, "customer": unknown, "name": "x", "callee": "33"},
        )
    ]

    assert answers[0] == {"plan": [f"No routing plan you can use has id {plan_b.pk}."]}
    assert answers[1] == {"plan": [f"No routing plan you can use has id {unknown}."]}
    assert answers[2] == {"customer": [f"No customer you can use has id {customer_b.pk}."]}
    assert answers[3] == {"customer": [f"No customer you can use has id {unknown}."]}
    assert not RouteTest.objects.exists()


def test_a_superuser_cannot_mix_tenants_in_a_route_test(superuser, staged, tenant_b):
    client = api_as(superuser)
    plan_b = default_plan(tenant_b)

    mixed = client.post(
        "/api/v1/route-tests",
        {"tenant": "tenant-a", "plan": plan_b.pk, "name": "x", "callee": "33"},
        format="json",
    )
    implied = client.post(
        "/api/v1/route-tests", {"plan": plan_b.pk, "name": "x", "callee": "33"}, format="json"
    )

    assert mixed.status_code == 400
    assert mixed.json() == {"plan": ["Pick a routing plan of the test's tenant."]}
    assert implied.status_code == 201
    assert implied.json()["tenant"] == "tenant-b"


# --- Impact -------------------------------------------------------------------------------


def test_the_impact_preview_replays_sampled_calls(api_a, staged, route_a, tenant_a):
    for n in range(3):
        DecisionSample.objects.create(
            decision_id=f"d{n}",
            decided_at=dt.datetime.now(tz=dt.UTC) - dt.timedelta(minutes=n),
            tenant=tenant_a,
            plan=staged,
            plan_version=1,
            request={"callee": f"3312345678{n}", "caller": "4420", "source_ip": "192.0.2.10"},
            outcome="routed",
            code=200,
        )
    swap_targets(route_a)

    answer = api_a.get(f"{PLANS}{staged.pk}/impact", {"limit": 2})

    body = answer.json()
    assert answer.status_code == 200, body
    assert (body["replayed"], body["outcome_changed"], body["first_trunk_changed"]) == (2, 0, 2)
    assert body["oldest"] is not None
    example = body["examples"][0]
    assert (example["decision_id"], example["what"]) == ("d0", "first trunk")
    assert (example["callee"], example["caller"]) == ("33123456780", "4420")
    assert (example["live"], example["draft"]) == ("200 via a-primary", "200 via a-backup")


def test_the_impact_of_a_plan_without_samples_is_empty(api_a, staged):
    body = api_a.get(f"{PLANS}{staged.pk}/impact").json()

    assert body == {
        "replayed": 0,
        "outcome_changed": 0,
        "first_trunk_changed": 0,
        "oldest": None,
        "examples": [],
    }


# --- Decisions ----------------------------------------------------------------------------


@pytest.fixture
def sample_a(staged, tenant_a) -> DecisionSample:
    return DecisionSample.objects.create(
        decision_id="0123456789abcdef0123456789abcdef",
        decided_at=dt.datetime(2026, 11, 30, 1, 2, 3, tzinfo=dt.UTC),
        tenant=tenant_a,
        plan=staged,
        plan_version=1,
        transport="http",
        request={"callee": "33123456789", "source_ip": "192.0.2.10"},
        outcome="routed",
        code=200,
        reason="OK",
        trunks=["a-primary", "a-backup"],
        trace=["matched 33"],
    )


def test_a_decision_is_looked_up_by_its_id(api_a, sample_a, superuser):
    answer = api_a.get(f"/api/v1/decisions/{sample_a.decision_id}")
    as_root = api_as(superuser).get(f"/api/v1/decisions/{sample_a.decision_id}")

    assert answer.status_code == as_root.status_code == 200
    assert answer.json() == {
        "decision_id": sample_a.decision_id,
        "decided_at": "2026-11-30T01:02:03Z",
        "transport": "http",
        "tenant": "tenant-a",
        "plan": "Default",
        "plan_version": 1,
        "request": {"callee": "33123456789", "source_ip": "192.0.2.10"},
        "outcome": "routed",
        "code": 200,
        "reason": "OK",
        "trunks": ["a-primary", "a-backup"],
        "trace": ["matched 33"],
    }
    assert api_a.get("/api/v1/decisions/unknown").status_code == 404


# --- Isolation ----------------------------------------------------------------------------


def test_the_outsider_gets_404_on_every_tenant_a_url(outsider, staged, route_a, sample_a):
    client = api_as(outsider)
    test = make_test(staged)
    plan = f"{PLANS}{staged.pk}"
    swap_targets(route_a)

    answers = {
        "versions": client.get(f"{plan}/versions"),
        "diff": client.get(f"{plan}/diff"),
        "bad diff": client.get(f"{plan}/diff", {"from": "abc"}),
        "impact": client.get(f"{plan}/impact"),
        "publish": client.post(f"{plan}/publish", {"force": False}, format="json"),
        "rollback": client.post(f"{plan}/rollback", {"to": 1}, format="json"),
        "run-tests": client.post(f"{plan}/run-tests", {}, format="json"),
        "test": client.get(f"/api/v1/route-tests/{test.pk}"),
        "test change": client.patch(
            f"/api/v1/route-tests/{test.pk}", {"name": "hijacked"}, format="json"
        ),
        "test delete": client.delete(f"/api/v1/route-tests/{test.pk}"),
        "decision": client.get(f"/api/v1/decisions/{sample_a.decision_id}"),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(
        answers, 404
    )
    # Worded as for ids that do not exist.
    assert answers["versions"].json() == client.get("/api/v1/routing-plans/999999/versions").json()
    listed = client.get("/api/v1/route-tests").json()["results"]
    assert listed == []
    test.refresh_from_db()
    assert test.name != "hijacked"
    assert PlanVersion.objects.filter(plan=staged).count() == 1


# --- Simulate with versions ----------------------------------------------------------------


def simulate(client, **fields):
    return client.post("/api/v1/simulate", {"callee": "+33612345678", **fields}, format="json")


def test_simulate_reads_the_draft_a_version_or_the_past(api_a, staged, route_a):
    swap_targets(route_a)
    publish(staged)  # version 2: a-backup first
    route_a.targets.filter(trunk__name="a-backup").delete()  # the draft: a-primary only
    first = PlanVersion.objects.get(plan=staged, number=1)
    plan_id = staged.pk

    live = simulate(api_a).json()
    draft = simulate(api_a, plan=plan_id, version="draft").json()
    one = simulate(api_a, plan=plan_id, version="1").json()
    by_source = simulate(api_a, source_ip="192.0.2.7", version=1).json()
    draft_by_source = simulate(api_a, source_ip="192.0.2.7", version="draft").json()
    past = simulate(api_a, as_of=first.published_at.isoformat()).json()

    assert (live["plan_version"], live["routes"][0]["trunk"]) == (2, "a-backup")
    assert (draft["plan_version"], [r["trunk"] for r in draft["routes"]]) == (None, ["a-primary"])
    assert (one["plan_version"], one["routes"][0]["trunk"]) == (1, "a-primary")
    assert (by_source["plan_version"], by_source["routes"][0]["trunk"]) == (1, "a-primary")
    assert draft_by_source["plan_version"] is None
    assert (past["plan_version"], past["routes"][0]["trunk"]) == (1, "a-primary")


def test_simulate_refuses_versions_it_cannot_read(api_a, staged, tenant_a, route_a):
    answers = {
        "unknown": simulate(api_a, plan=staged.pk, version="7"),
        "unknown by source": simulate(api_a, source_ip="192.0.2.7", version=7),
        "not a version": simulate(api_a, version="latest"),
        "both": simulate(api_a, version="1", as_of="2026-01-01T00:00:00Z"),
        "too early": simulate(api_a, as_of="2000-01-01T00:00:00Z"),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(
        answers, 400
    )
    assert (
        answers["unknown"]
        .json()["version"][0]
        .startswith(
            "Plan Default has no version 7 kept (kept: versions 1 to 1, the oldest published "
        )
    )
    assert (
        answers["unknown by source"]
        .json()["version"][0]
        .startswith("Plan Default has no version 7 kept (kept: versions 1 to 1, ")
    )
    assert answers["not a version"].json() == {
        "version": ['Give "draft", "live" or a version number.']
    }
    assert "not both" in answers["both"].json()["as_of"][0]
    too_early = answers["too early"].json()["as_of"][0]
    assert too_early.startswith("Plan Default has no version in force at 2000-01-01")


def test_simulating_a_version_of_an_unstaged_plan_says_so(api_a, tenant_a, route_a):
    plan = default_plan(tenant_a)

    answer = simulate(api_a, plan=plan.pk, version="1")
    draft = simulate(api_a, plan=plan.pk, version="draft")

    assert answer.status_code == 400
    assert answer.json()["version"][0].startswith("Plan Default has no published version")
    assert draft.status_code == 200
    assert draft.json()["plan_version"] is None


def test_the_simulation_stays_in_the_users_tenant_with_a_version(outsider, staged, route_b):
    answer = simulate(api_as(outsider), **call_body(source_ip="192.0.2.7"), version="draft")

    assert answer.status_code == 200
    assert (answer.json()["outcome"], answer.json()["tenant"]) == ("forbidden", None)


def test_the_schema_documents_the_version_endpoints(api_a):
    paths = api_a.get("/api/v1/schema", HTTP_ACCEPT="application/json").json()["paths"]

    for path in (
        "/api/v1/routing-plans/{id}/versions/",
        "/api/v1/routing-plans/{id}/diff/",
        "/api/v1/routing-plans/{id}/publish/",
        "/api/v1/routing-plans/{id}/rollback/",
        "/api/v1/routing-plans/{id}/run-tests/",
        "/api/v1/routing-plans/{id}/impact/",
        "/api/v1/route-tests/{id}/",
        "/api/v1/decisions/{decision_id}/",
    ):
        assert path in paths, path


def test_discard_brings_the_draft_back_to_the_live_version(api_a, outsider, staged, route_a):
    route_a.description = "edited"
    route_a.save()
    other = api_as(outsider).post(f"{PLANS}{staged.pk}/discard")
    done = api_a.post(f"{PLANS}{staged.pk}/discard")
    again = api_a.post(f"{PLANS}{staged.pk}/discard")

    assert other.status_code == 404
    assert done.status_code == 200
    assert done.json() == {"added": 0, "removed": 0, "changed": 1, "skipped": []}
    assert again.status_code == 409
    assert "Nothing to discard" in again.json()["detail"]
    assert DialPrefix.objects.get(plan=staged, prefix="33").description == "France via A"
