"""Staged plans in the admin: the Versions page, publish, rollback, diffs, route tests,
the decision lookup and the simulator's "Routes" choice, through the real views."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from routing.models import RouteTarget
from routing.resolver import CallRequest
from routing.service import decide
from tests.factories import default_plan, make_operator
from versions.models import DecisionSample, PlanVersion, RouteTest
from versions.publishing import DRAFT, diff, publish

pytestmark = pytest.mark.django_db(transaction=True)

FRANCE = CallRequest(callee="33123456789", caller="4420", source_ip="192.0.2.10", call_id="c1")


def first_trunk() -> str:
    decision = decide(FRANCE)
    return decision.routes[0].trunk if decision.routes else ""


def versions_url(plan) -> str:
    return reverse("admin:routing_routingplan_versions", args=[plan.pk])


def publish_url(plan) -> str:
    return reverse("admin:routing_routingplan_publish", args=[plan.pk])


def rollback_url(plan, number: int) -> str:
    return reverse("admin:routing_routingplan_rollback", args=[plan.pk, number])


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def swap_targets(route) -> None:
    """Edit the draft: a-backup first."""
    first, second = route.targets.order_by("priority")
    RouteTarget.objects.filter(pk=first.pk).update(priority=2)
    RouteTarget.objects.filter(pk=second.pk).update(priority=1)


@pytest.fixture
def staged(tenant_a, trunks_a, route_a):
    plan = default_plan(tenant_a)
    publish(plan, comment="first")
    plan.refresh_from_db()
    return plan


@pytest.fixture
def france_test(staged, tenant_a):
    return RouteTest.objects.create(
        tenant=tenant_a,
        plan=staged,
        name="France goes to a-primary",
        callee="33123456789",
        expect_outcome="routed",
        expect_first_trunk="a-primary",
    )


def test_an_unstaged_plan_says_changes_go_live_and_offers_the_first_publish(
    client, operator_a, route_a, tenant_a
):
    client.force_login(operator_a)
    plan = default_plan(tenant_a)
    html = client.get(versions_url(plan)).content.decode()
    assert "Changes go live when saved" in html
    assert "Publish version 1 (start staging)" in html

    response = client.post(publish_url(plan), {"comment": "go", "expected": ""}, follow=True)
    assert "Published version 1 of plan Default: 1 added" in " ".join(messages_of(response))
    assert default_plan(tenant_a).published_version == 1


def test_the_page_shows_the_drafts_differences_with_trunk_names(
    client, operator_a, staged, route_a
):
    swap_targets(route_a)
    client.force_login(operator_a)
    response = client.get(versions_url(staged))
    html = response.content.decode()
    assert response.context["diff"].changed == 1
    assert 'calls use <strong id="live-version">version 1' in html
    assert "Carrier A/a-primary (1, 100) → Carrier A/a-backup (2, 100)" in html
    assert "Carrier A/a-backup (1, 100) → Carrier A/a-primary (2, 100)" in html  # tried first
    assert "targets" in response.context["diff_lines"][0].columns
    assert "any caller, always" in html
    assert 'name="expected" value="1"' in html
    assert 'name="force"' not in html  # operators may not force


def test_publishing_from_the_page_changes_what_calls_get(client, operator_a, staged, route_a):
    swap_targets(route_a)
    assert first_trunk() == "a-primary"
    client.force_login(operator_a)
    response = client.post(
        publish_url(staged), {"comment": "backup first", "expected": "1"}, follow=True
    )
    assert "Published version 2 of plan Default" in " ".join(messages_of(response))
    assert first_trunk() == "a-backup"
    version = PlanVersion.objects.get(plan=staged, number=2)
    assert (version.comment, version.published_by_name) == ("backup first", "operator-a")
    html = response.content.decode()
    assert "backup first" in html
    assert "differences from the previous" in html


def test_rollback_confirms_with_the_diff_then_publishes_the_old_routes(
    client, operator_a, staged, route_a
):
    swap_targets(route_a)
    publish(staged)
    client.force_login(operator_a)
    page = client.get(rollback_url(staged, 1))
    assert page.status_code == 200
    assert page.context["diff"].changed == 1
    assert "Yes, roll back to version 1" in page.content.decode()
    assert first_trunk() == "a-backup"

    response = client.post(rollback_url(staged, 1), {"expected": "2"}, follow=True)
    assert "it is now version 3" in " ".join(messages_of(response))
    assert first_trunk() == "a-primary"
    assert PlanVersion.objects.get(plan=staged, number=3).kind == "rollback"


def test_an_unchanged_draft_is_refused_with_its_message(client, operator_a, staged):
    client.force_login(operator_a)
    response = client.post(publish_url(staged), {"expected": "1"}, follow=True)
    assert response.status_code == 200
    assert "Nothing to publish: the draft of plan Default is the same as version 1." in (
        messages_of(response)
    )


def test_a_stale_expected_version_is_refused(client, operator_a, staged, route_a, tenant_a):
    swap_targets(route_a)
    publish(staged, user=make_operator("bob", tenant_a))
    route_a.description = "again"
    route_a.save()
    client.force_login(operator_a)
    response = client.post(publish_url(staged), {"expected": "1"}, follow=True)
    text = " ".join(messages_of(response))
    assert "published by bob at" in text
    assert "while you were looking at version 1" in text
    assert default_plan(tenant_a).published_version == 2


def test_failing_tests_refuse_a_publish_and_show_the_results(
    client, operator_a, staged, route_a, france_test
):
    swap_targets(route_a)
    client.force_login(operator_a)
    response = client.post(publish_url(staged), {"expected": "1", "force": "1"}, follow=True)
    # An operator's forged "force" is refused: they lack the permission.
    assert "you may not force a publish" in " ".join(messages_of(response))
    response = client.post(publish_url(staged), {"expected": "1"})
    html = response.content.decode()
    assert "1 route test of plan Default failed against the draft" in html
    assert "expected first trunk a-primary, got a-backup" in html
    assert default_plan(staged.tenant).published_version == 1


def test_a_user_allowed_to_force_sees_the_box_and_forces(
    client, operator_a, staged, route_a, france_test
):
    operator_a.user_permissions.add(Permission.objects.get(codename="force_publish_planversion"))
    swap_targets(route_a)
    client.force_login(operator_a)
    assert 'name="force"' in client.get(versions_url(staged)).content.decode()
    response = client.post(publish_url(staged), {"expected": "1", "force": "1"}, follow=True)
    assert "(forced past failing route tests)" in " ".join(messages_of(response))
    assert PlanVersion.objects.get(plan=staged, number=2).forced


def test_running_the_tests_from_the_page_shows_their_results(
    client, operator_a, staged, route_a, france_test
):
    client.force_login(operator_a)
    html = client.get(versions_url(staged), {"run_tests": "1"}).content.decode()
    assert "vs-pass" in html
    swap_targets(route_a)
    html = client.get(versions_url(staged), {"run_tests": "1"}).content.decode()
    assert "failed: expected first trunk a-primary, got a-backup" in html
    france_test.refresh_from_db()
    assert france_test.last_passed is False


def test_without_the_publish_permission_no_form_and_posts_are_403(client, staged, tenant_a):
    reader = make_operator("reader", tenant_a)
    reader.groups.clear()
    reader.user_permissions.add(Permission.objects.get(codename="view_routingplan"))
    client.force_login(reader)
    html = client.get(versions_url(staged)).content.decode()
    assert "publish-form" not in html
    assert "roll back to this" not in html
    assert client.post(publish_url(staged), {"expected": "1"}).status_code == 403
    assert client.post(rollback_url(staged, 1)).status_code == 403


def test_the_impact_preview_counts_replayed_calls_and_links_decisions(
    client, operator_a, staged, route_a, tenant_a
):
    DecisionSample.objects.create(
        decision_id="d-france-1",
        decided_at=timezone.now() - dt.timedelta(minutes=5),
        tenant=tenant_a,
        plan=staged,
        plan_version=1,
        request={"callee": "33123456789", "caller": "4420", "source_ip": "192.0.2.10"},
        outcome="routed",
        code=200,
        trunks=["a-primary"],
    )
    swap_targets(route_a)
    client.force_login(operator_a)
    response = client.get(versions_url(staged))
    preview = response.context["impact"]
    assert (preview.replayed, preview.first_trunk_changed) == (1, 1)
    html = response.content.decode()
    assert "d-france-1" in html
    assert "/admin/decision-lookup/?decision_id=d-france-1" in html


def test_the_diff_page_compares_versions_live_and_draft(client, operator_a, staged, route_a):
    swap_targets(route_a)
    publish(staged)
    client.force_login(operator_a)
    url = reverse("admin:routing_routingplan_diff", args=[staged.pk])
    response = client.get(url, {"from": "1", "to": "live"})
    assert response.context["diff"].changed == 1
    assert response.context["diff"].new == 2
    assert "No difference" in client.get(url, {"from": "live", "to": "draft"}).content.decode()
    refused = client.get(url, {"from": "9", "to": "draft"}, follow=True)
    assert "has no version 9" in " ".join(messages_of(refused))
    bad = client.get(url, {"from": "latest"}, follow=True)
    assert "is not a version" in " ".join(messages_of(bad))


def test_the_diff_page_pages_through_many_rows(client, operator_a, staged, tenant_a, trunks_a):
    from tests.factories import make_route

    for n in range(450):
        make_route(tenant_a, f"49{n:03d}", trunks_a[0])
    client.force_login(operator_a)
    url = reverse("admin:routing_routingplan_diff", args=[staged.pk])
    first = client.get(url, {"from": "live", "to": "draft"})
    assert first.context["diff"].added == 450
    assert len(first.context["diff_lines"]) == 200
    assert first.context["next_url"]
    third = client.get(url, {"from": "live", "to": "draft", "page": "3"})
    assert len(third.context["diff_lines"]) == 50
    assert not third.context["next_url"]


def test_an_outsider_gets_404_for_tenant_as_pages_tests_and_decisions(
    client, outsider, staged, france_test, tenant_a
):
    DecisionSample.objects.create(
        decision_id="d-secret",
        decided_at=timezone.now(),
        tenant=tenant_a,
        plan=staged,
        request={"callee": "33123"},
        outcome="routed",
        code=200,
    )
    client.force_login(outsider)
    for url in (
        versions_url(staged),
        reverse("admin:routing_routingplan_diff", args=[staged.pk]),
        rollback_url(staged, 1),
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(publish_url(staged), {"expected": "1"}).status_code == 404
    assert client.post(rollback_url(staged, 1)).status_code == 404
    change = reverse("admin:versions_routetest_change", args=[france_test.pk])
    assert client.get(change, follow=True).context["messages"]  # "doesn't exist" redirect
    listing = client.get(reverse("admin:versions_routetest_changelist")).content.decode()
    assert "France goes to a-primary" not in listing
    lookup = client.get(reverse("ops:decision-lookup"), {"decision_id": "d-secret"})
    assert "No recorded decision with this id" in lookup.content.decode()
    assert (
        "d-secret"
        not in client.get(reverse("admin:versions_decisionsample_changelist")).content.decode()
    )
    overview = client.get(reverse("admin:routing_routingplan_overview")).content.decode()
    assert versions_url(staged) not in overview
    assert default_plan(tenant_a).published_version == 1


def test_an_outsider_cannot_pick_another_tenants_plan_for_a_test(
    client, outsider, staged, tenant_b
):
    client.force_login(outsider)
    response = client.post(
        reverse("admin:versions_routetest_add"),
        {"plan": staged.pk, "name": "sneaky", "callee": "33123", "is_active": "on"},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["adminform"].form.errors["plan"])
    assert not RouteTest.objects.filter(name="sneaky").exists()


def test_the_route_test_form_shows_the_models_clean_errors(client, operator_a, staged):
    client.force_login(operator_a)
    response = client.post(
        reverse("admin:versions_routetest_add"),
        {
            "plan": staged.pk,
            "name": "unknown trunk",
            "callee": "33123",
            "expect_first_trunk": "nowhere",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    assert "No trunk of this tenant is named &#x27;nowhere&#x27;" in response.content.decode()


def test_route_test_actions_run_against_the_draft_or_live(
    client, operator_a, staged, route_a, france_test
):
    swap_targets(route_a)
    client.force_login(operator_a)
    changelist = reverse("admin:versions_routetest_changelist")
    live = client.post(
        changelist, {"action": "run_against_live", "_selected_action": [france_test.pk]}
    )
    assert "1 route test run against live: 1 passed, 0 failed." in messages_of(live)
    draft = client.post(
        changelist, {"action": "run_against_draft", "_selected_action": [france_test.pk]}
    )
    assert "expected first trunk a-primary, got a-backup" in draft.content.decode()
    listing = client.get(changelist, {"plan__id__exact": staged.pk}).content.decode()
    assert "failed: expected first trunk" in listing


def test_the_decision_lookup_shows_the_sampled_decision(client, operator_a, staged, tenant_a):
    DecisionSample.objects.create(
        decision_id="abc-123",
        decided_at=timezone.now(),
        tenant=tenant_a,
        plan=staged,
        plan_version=1,
        request={"callee": "33123456789", "source_ip": "192.0.2.10"},
        outcome="routed",
        code=200,
        trunks=["a-primary", "a-backup"],
        trace=["source 192.0.2.10 is in 192.0.2.0/24: tenant tenant-a"],
    )
    client.force_login(operator_a)
    html = client.get(reverse("ops:decision-lookup"), {"decision_id": "abc-123"}).content.decode()
    assert "version 1" in html
    assert "a-primary, a-backup" in html
    assert "source 192.0.2.10 is in 192.0.2.0/24" in html
    unknown = client.get(reverse("ops:decision-lookup"), {"decision_id": "nope"})
    assert "No recorded decision with this id" in unknown.content.decode()
    listing = client.get(
        reverse("admin:versions_decisionsample_changelist"), {"q": "33123456789"}
    ).content.decode()
    assert "abc-123" in listing


class TestTheSimulatorsRoutesChoice:
    URL = "/admin/simulator/"

    def simulate(self, client, user, **params):
        client.force_login(user)
        return client.get(self.URL, {"callee": "33123456789", "caller": "4420", **params})

    def test_live_is_the_default_and_shows_the_version(self, client, operator_a, staged, route_a):
        swap_targets(route_a)
        response = self.simulate(client, operator_a)
        assert response.context["result"].decision.plan_version == 1
        assert 'id="sim-version">version 1<' in response.content.decode()

    def test_the_draft_a_kept_version_and_as_of(self, client, operator_a, staged, route_a):
        swap_targets(route_a)
        publish(staged)
        route_a.targets.filter(trunk__name="a-primary").delete()
        draft = self.simulate(client, operator_a, routes="draft").context["result"]
        assert [r.trunk for r in draft.decision.routes] == ["a-backup"]
        assert draft.decision.plan_version is None
        plan = default_plan(staged.tenant)
        old = self.simulate(client, operator_a, routes="version", routes_version="1", plan=plan.pk)
        assert old.context["result"].decision.plan_version == 1
        assert old.context["result"].decision.routes[0].trunk == "a-primary"
        day_ago = timezone.now() - dt.timedelta(days=1)
        PlanVersion.objects.filter(plan=staged, number=1).update(published_at=day_ago)
        back = self.simulate(
            client,
            operator_a,
            routes="as_of",
            routes_as_of=(day_ago + dt.timedelta(hours=1)).isoformat(),
        )
        assert back.context["result"].decision.plan_version == 1

    def test_a_version_that_is_not_kept_is_a_form_error(self, client, operator_a, staged):
        plan = default_plan(staged.tenant)
        response = self.simulate(
            client, operator_a, routes="version", routes_version="7", plan=plan.pk
        )
        assert response.context["result"] is None
        assert "has no version 7 kept" in str(response.context["form"].non_field_errors())
        response = self.simulate(client, operator_a, routes="version", routes_version="1")
        assert "pick the routing plan or the customer" in str(
            response.context["form"].non_field_errors()
        )


def test_the_plan_list_change_page_and_index_link_to_the_versions_pages(client, operator_a, staged):
    client.force_login(operator_a)
    url = versions_url(staged)
    listing = client.get(reverse("admin:routing_routingplan_changelist")).content.decode()
    assert f'<a href="{url}">live: version 1</a>' in listing
    change = client.get(reverse("admin:routing_routingplan_change", args=[staged.pk]))
    assert f'href="{url}" class="versionslink"' in change.content.decode()
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:routing_routingplan_overview") in index
    assert reverse("ops:decision-lookup") in index
    overview = client.get(reverse("admin:routing_routingplan_overview")).content.decode()
    assert url in overview


def test_discarding_the_draft_from_the_page_needs_the_confirmation(
    client, operator_a, staged, route_a
):
    swap_targets(route_a)
    client.force_login(operator_a)
    page = client.get(versions_url(staged)).content.decode()
    assert 'id="discard-form"' in page
    url = f"{versions_url(staged)}discard/"
    refused = client.post(url, follow=True)
    assert "Tick the box" in refused.content.decode()
    assert diff(staged, 1, DRAFT).changed == 1
    done = client.post(url, {"confirm": "1"}, follow=True)
    assert "Discarded the draft: 1 route back as in version 1." in done.content.decode()
    assert diff(staged, 1, DRAFT).empty


def test_an_outsider_cannot_discard_another_tenants_draft(client, outsider, staged, route_a):
    swap_targets(route_a)
    client.force_login(outsider)
    assert client.post(f"{versions_url(staged)}discard/", {"confirm": "1"}).status_code == 404
    assert diff(staged, 1, DRAFT).changed == 1
