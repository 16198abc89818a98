"""Staged plans: the draft, publish, diff, rollback, retention (versions.publishing)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from routing.compiled import CompiledRouteTable
from routing.models import DialPrefix, PublishedRoute, RouteTarget
from routing.resolver import CallRequest, Outcome
from routing.service import decide
from routing.simulation import PinnedTable, SimulationRefused
from routing.tables import DatabaseRouteTable
from tests.factories import default_plan, make_operator, make_route, make_trunk
from versions import pins
from versions.models import PlanVersion, RouteTest
from versions.publishing import (
    DRAFT,
    PublishRefused,
    RouteTestsFailed,
    diff,
    discard_draft,
    publish,
    rollback,
)

pytestmark = pytest.mark.django_db(transaction=True)


def call(number: str = "33123456789", table=None):
    return decide(
        CallRequest(callee=number, caller="4420", source_ip="192.0.2.10", call_id="c1"),
        table=table or DatabaseRouteTable(),
    )


def first_trunk(decision) -> str:
    return decision.routes[0].trunk if decision.routes else ""


@pytest.fixture
def staged(tenant_a, trunks_a, route_a):
    """Tenant A's plan, published once: version 1 routes 33 to a-primary first."""
    plan = default_plan(tenant_a)
    publish(plan, comment="first")
    plan.refresh_from_db()
    return plan


def swap_targets(route):
    """Edit the draft: a-backup first."""
    first, second = route.targets.order_by("priority")
    RouteTarget.objects.filter(pk=first.pk).update(priority=2)
    RouteTarget.objects.filter(pk=second.pk).update(priority=1)


def test_a_plan_that_is_not_staged_is_live_as_saved(tenant_a, route_a):
    plan = default_plan(tenant_a)
    assert plan.published_version is None
    assert first_trunk(call()) == "a-primary"
    swap_targets(route_a)
    assert first_trunk(call()) == "a-backup"


def test_the_first_publish_stages_the_plan_and_records_who_when_why(tenant_a, route_a):
    user = make_operator("alice", tenant_a)
    published = publish(default_plan(tenant_a), user=user, comment="go live")
    version = published.version
    assert (version.number, version.kind, version.added, version.routes) == (1, "publish", 1, 1)
    assert version.published_by == user
    assert version.published_by_name == "alice"
    assert version.comment == "go live"
    assert default_plan(tenant_a).published_version == 1
    decision = call()
    assert decision.plan_version == 1
    assert "as published in version 1" in " ".join(decision.trace)


def test_calls_keep_the_published_version_until_the_draft_is_published(staged, route_a):
    swap_targets(route_a)
    make_route(staged.tenant, "44", route_a.targets.first().trunk)
    assert first_trunk(call()) == "a-primary"
    assert call("4420123").outcome == Outcome.NO_ROUTE

    published = publish(staged, comment="swap")
    assert (published.version.number, published.version.added, published.version.changed) == (
        2,
        1,
        1,
    )
    assert first_trunk(call()) == "a-backup"
    assert call("4420123").outcome == Outcome.ROUTED


def test_a_version_stores_the_changed_routes_only(tenant_a, trunks_a):
    for n in range(20):
        make_route(tenant_a, f"49{n:02d}", *trunks_a)
    plan = default_plan(tenant_a)
    publish(plan)
    assert PublishedRoute.objects.filter(plan=plan).count() == 20
    DialPrefix.objects.filter(prefix="4901").update(description="changed")
    DialPrefix.objects.filter(prefix="4902").delete()
    publish(plan)
    rows = PublishedRoute.objects.filter(plan=plan)
    assert rows.count() == 21  # one new row; two closed
    assert rows.filter(until=2).count() == 2
    assert rows.filter(until__isnull=True).count() == 19


def test_the_diff_names_added_removed_and_changed_routes_with_their_targets(staged, route_a):
    swap_targets(route_a)
    make_route(staged.tenant, "44", route_a.targets.first().trunk)
    found = diff(staged, 1, DRAFT)
    assert (found.added, found.removed, found.changed) == (1, 0, 1)
    by_prefix = {row.prefix: row for row in found.rows}
    assert by_prefix["44"].change == "added"
    assert by_prefix["33"].change == "changed"
    assert by_prefix["33"].changed_columns() == ["targets"]
    publish(staged)
    DialPrefix.objects.filter(prefix="44").delete()
    publish(staged)
    between = diff(staged, 1, 3)
    assert (between.added, between.removed, between.changed) == (0, 0, 1)
    assert [row.change for row in diff(staged, 2, 3).rows] == ["removed"]
    assert [row.change for row in diff(staged, 3, 2).rows] == ["added"]


def test_a_diff_of_a_version_with_the_draft_is_the_same_as_between_versions(tenant_a, trunks_a):
    plan = default_plan(tenant_a)
    for n in range(30):
        make_route(tenant_a, f"3{n:02d}", *trunks_a)
    publish(plan)
    DialPrefix.objects.filter(prefix__in=["300", "301"]).delete()
    DialPrefix.objects.filter(prefix="302").update(is_active=False)
    make_route(tenant_a, "999", trunks_a[1])
    draft = diff(plan, 1, DRAFT)
    publish(plan)
    published = diff(plan, 1, 2)
    assert [(r.change, r.prefix) for r in draft.rows] == [
        (r.change, r.prefix) for r in published.rows
    ]
    assert (draft.added, draft.removed, draft.changed) == (1, 2, 1)


def test_rollback_publishes_an_older_version_and_leaves_the_draft(staged, route_a):
    swap_targets(route_a)
    publish(staged)
    assert first_trunk(call()) == "a-backup"
    done = rollback(staged, 1, comment="bad carrier")
    assert (done.version.number, done.version.kind, done.version.source) == (3, "rollback", 1)
    assert first_trunk(call()) == "a-primary"
    assert call().plan_version == 3
    # The draft still has the swap: publishing it again is a change.
    assert diff(staged, 3, DRAFT).changed == 1


def test_publishing_an_unchanged_draft_is_refused(staged):
    with pytest.raises(
        PublishRefused,
        match="Nothing to publish: the draft of plan Default is the same as version 1",
    ):
        publish(staged)
    assert PlanVersion.objects.filter(plan=staged).count() == 1


def test_a_publish_reviewed_against_an_older_version_is_refused(staged, route_a, tenant_a):
    bob = make_operator("bob", tenant_a)
    swap_targets(route_a)
    publish(staged, user=bob, expected=1)
    route_a.description = "again"
    route_a.save()
    with pytest.raises(
        PublishRefused, match=r"published by bob at .* while you were looking at version 1"
    ):
        publish(staged, expected=1)
    assert default_plan(tenant_a).published_version == 2


def test_rollback_past_retention_and_to_unknown_versions_is_refused(staged, route_a, settings):
    settings.ROUTING_VERSIONS_KEEP = 2
    for n in range(3):
        route_a.description = f"edit {n}"
        route_a.save()
        publish(staged)
    assert list(PlanVersion.objects.filter(plan=staged).values_list("number", flat=True)) == [
        4,
        3,
    ]
    with pytest.raises(PublishRefused, match="Version 1 of plan Default is past retention"):
        rollback(staged, 1)
    with pytest.raises(PublishRefused, match="has no version 9"):
        rollback(staged, 9)
    with pytest.raises(PublishRefused, match="at version 4 already"):
        rollback(staged, 4)
    # Rows only the forgotten versions had are gone too.
    assert not PublishedRoute.objects.filter(plan=staged, until__lte=3).exists()
    rollback(staged, 3)
    assert call().plan_version == 5


def test_failing_route_tests_block_a_publish_unless_forced_by_an_allowed_user(
    staged, route_a, tenant_a
):
    RouteTest.objects.create(
        tenant=tenant_a,
        plan=staged,
        name="France goes to a-primary",
        callee="33123456789",
        expect_outcome="routed",
        expect_first_trunk="a-primary",
    )
    swap_targets(route_a)
    with pytest.raises(RouteTestsFailed, match="1 route test of plan Default failed") as failed:
        publish(staged)
    assert "expected first trunk a-primary, got a-backup" in failed.value.results[0].message
    plain = make_operator("plain", tenant_a)
    with pytest.raises(PublishRefused, match="you may not force"):
        publish(staged, user=plain, force=True)
    assert default_plan(tenant_a).published_version == 1
    allowed = make_operator("lead", tenant_a)
    allowed.user_permissions.add(Permission.objects.get(codename="force_publish_planversion"))
    allowed = type(allowed).objects.get(pk=allowed.pk)
    version = publish(staged, user=allowed, force=True).version
    assert version.forced
    assert "France goes to a-primary" in version.failed_tests
    assert RouteTest.objects.get().last_passed is False


def test_a_route_test_naming_a_trunk_that_no_longer_exists_says_so(staged, tenant_a):
    RouteTest.objects.create(
        tenant=tenant_a, plan=staged, name="gone", callee="33123", expect_first_trunk="old-one"
    )
    with pytest.raises(RouteTestsFailed) as failed:
        publish(staged)
    assert failed.value.results[0].message == "trunk 'old-one' no longer exists: fix the test"


def test_simulations_read_the_draft_a_kept_version_or_a_past_time(staged, route_a):
    swap_targets(route_a)
    publish(staged)
    route_a.targets.filter(trunk__name="a-backup").delete()
    database = DatabaseRouteTable()
    assert first_trunk(call(table=PinnedTable(database, pins.version(staged.pk, 1)))) == (
        "a-primary"
    )
    as_draft = call(table=PinnedTable(database, pins.draft(staged.pk)))
    assert [r.trunk for r in as_draft.routes] == ["a-primary"]
    assert as_draft.plan_version is None
    first = PlanVersion.objects.get(plan=staged, number=1)
    back_then = call(table=PinnedTable(database, pins.as_of(first.published_at)))
    assert back_then.plan_version == 1
    with pytest.raises(SimulationRefused, match="has no version 7 kept"):
        call(table=PinnedTable(database, pins.version(staged.pk, 7)))


def test_the_compiled_table_follows_publishes_not_draft_edits(staged, route_a, tenant_a):
    table = CompiledRouteTable(background=False, poll_interval=0)
    table.wait_ready(10)
    assert first_trunk(call(table=table)) == "a-primary"
    swap_targets(route_a)
    table.refresh()
    assert first_trunk(call(table=table)) == "a-primary"
    compiled = table._tables[staged.pk]
    publish(staged)
    table.refresh()
    assert table._tables[staged.pk] is compiled  # a small publish: its prefixes reloaded
    held, _ = compiled.state
    assert held == 2
    assert first_trunk(call(table=table)) == "a-backup"
    rollback(staged, 1)
    table.refresh()
    assert table._tables[staged.pk].state[0] == 3
    assert first_trunk(call(table=table)) == "a-primary"


def test_the_compiled_table_answers_another_version_from_the_database(staged, route_a):
    table = CompiledRouteTable(background=False, poll_interval=0)
    table.wait_ready(10)
    swap_targets(route_a)
    publish(staged)
    table.refresh()
    old = call(table=PinnedTable(table, pins.version(staged.pk, 1)))
    assert (first_trunk(old), old.plan_version) == ("a-primary", 1)
    assert first_trunk(call(table=table)) == "a-backup"


def test_a_staged_decision_costs_the_same_queries_as_before(
    staged, django_assert_num_queries, trunks_a
):
    table = DatabaseRouteTable()
    call(table=table)  # warm
    with django_assert_num_queries(5):  # source, customers, routes, trunks, sessions: none else
        call(table=table)


def test_an_outsiders_plan_is_untouched_by_a_publish(staged, tenant_b, route_b):
    publish(staged.__class__.objects.get(tenant=tenant_b, name="Default"))
    assert PlanVersion.objects.filter(plan__tenant=tenant_b).count() == 1
    assert PlanVersion.objects.filter(plan=staged).count() == 1
    trunk = make_trunk(tenant_b, "b-third")
    RouteTarget.objects.create(prefix=route_b, trunk=trunk, priority=9, weight=100)
    assert diff(staged, 1, DRAFT).empty


def test_discarding_the_draft_brings_back_the_live_routes(staged, route_a, tenant_a, trunks_a):
    swap_targets(route_a)
    make_route(tenant_a, "44", trunks_a[0])
    discarded = discard_draft(staged)
    assert (discarded.diff.added, discarded.diff.changed) == (1, 1)
    assert discarded.skipped == []
    assert diff(staged, 1, DRAFT).empty
    restored = DialPrefix.objects.get(plan=staged, prefix="33")
    assert [t.trunk.name for t in restored.targets.order_by("priority")] == [
        "a-primary",
        "a-backup",
    ]
    assert not DialPrefix.objects.filter(plan=staged, prefix="44").exists()
    with pytest.raises(PublishRefused, match="Nothing to discard"):
        discard_draft(staged)


def test_discarding_names_the_targets_whose_trunk_is_gone(staged, route_a, trunks_a):
    gone = trunks_a[1].pk
    route_a.delete()
    trunks_a[1].delete()
    discarded = discard_draft(staged)
    assert discarded.skipped == [f"route 33: a target's trunk #{gone} was deleted since"]
    restored = DialPrefix.objects.get(plan=staged, prefix="33")
    assert [t.trunk.name for t in restored.targets.all()] == ["a-primary"]


def test_a_plan_that_is_not_staged_has_no_draft_to_discard(tenant_a, route_a):
    with pytest.raises(PublishRefused, match="is not staged"):
        discard_draft(default_plan(tenant_a))


def test_as_of_refuses_only_when_the_call_reaches_a_plan_without_that_version(
    staged, tenant_a, trunks_a
):
    from routing.models import Customer, CustomerSource, RoutingPlan

    other = RoutingPlan.objects.create(tenant=tenant_a, name="Later")
    make_route(tenant_a, "33", trunks_a[1], plan=other)
    vip = Customer.objects.create(tenant=tenant_a, name="VIP", plan=other)
    CustomerSource.objects.create(customer=vip, network="192.0.2.99/32")
    first = PlanVersion.objects.get(plan=staged, number=1)
    publish(other)  # published after `first`: it had no version then
    database = DatabaseRouteTable()
    # The default customer's call: VIP's plan is a candidate that does not matter.
    assert call(table=PinnedTable(database, pins.as_of(first.published_at))).plan_version == 1
    vip_call = CallRequest(callee="33123", source_ip="192.0.2.99")
    with pytest.raises(SimulationRefused, match="Plan Later has no version in force at "):
        decide(vip_call, table=PinnedTable(database, pins.as_of(first.published_at)))
