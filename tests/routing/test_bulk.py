"""routing.bulk: a trunk's routes moved to another trunk, bulk edits of a filtered set."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from routing import bulk, changes
from routing.models import DialPrefix, PublishedRoute, RouteChange, RouteTarget
from tests.factories import make_route, make_trunk
from versions.publishing import publish


def order(route: DialPrefix) -> list[tuple[str, int, int]]:
    return [(t.trunk.name, t.priority, t.weight) for t in route.targets.order_by("priority", "id")]


@pytest.fixture
def spare_a(tenant_a):
    return make_trunk(tenant_a, "a-spare", carrier="Carrier A2")


def move(user, trunk, new_trunk, mode: str) -> bulk.Preview:
    """Preview the move as the trunk page does, then apply it with that preview's
    fingerprint."""
    preview = bulk.preview_trunk_move(user=user, trunk=trunk, new_trunk=new_trunk, mode=mode)
    return bulk.move_trunk(
        user=user, trunk=trunk, new_trunk=new_trunk, mode=mode, expected=preview.fingerprint
    )


def test_replace_moves_every_route_of_the_trunk_with_history_and_one_log_entry_each(
    operator_a, trunks_a, spare_a, route_b
):
    primary, backup = trunks_a
    uk = make_route(operator_a.tenant, "44", primary, backup)
    de = make_route(operator_a.tenant, "49", (primary, 1, 70), (spare_a, 1, 30))
    make_route(operator_a.tenant, "39", backup)  # does not use the trunk
    before = changes.current_version()

    preview = bulk.preview_trunk_move(
        user=operator_a, trunk=primary, new_trunk=spare_a, mode=bulk.REPLACE
    )
    assert (preview.selected, preview.count) == (2, 2)
    assert {r.prefix for r in preview.sample} == {"44", "49"}
    assert "1 route already had" in " ".join(preview.notes)

    bulk.move_trunk(
        user=operator_a,
        trunk=primary,
        new_trunk=spare_a,
        mode=bulk.REPLACE,
        expected=preview.fingerprint,
    )
    assert order(uk) == [("a-spare", 1, 100), ("a-backup", 2, 100)]
    assert order(de) == [("a-spare", 1, 30)]  # had it already: only the old one goes
    assert not RouteTarget.objects.filter(trunk=primary).exists()
    history = RouteTarget.history.filter(history_user=operator_a)
    assert sorted(history.values_list("history_type", flat=True)) == ["-", "~"]
    assert all("replaced by" in h.history_change_reason for h in history)
    keys = set(
        RouteChange.objects.filter(version__gt=before, kind=changes.PREFIX).values_list(
            "key", flat=True
        )
    )
    plan = uk.plan_id
    assert keys == {f"{plan}:44", f"{plan}:49"}
    # B's route of the same prefix is untouched.
    assert order(route_b) == [("b-primary", 1, 100), ("b-backup", 2, 100)]


def test_failover_goes_right_after_the_trunk_and_later_targets_move_down(
    operator_a, trunks_a, spare_a
):
    primary, backup = trunks_a
    uk = make_route(operator_a.tenant, "44", primary, backup)
    move(operator_a, primary, spare_a, bulk.FAILOVER)
    assert order(uk) == [("a-primary", 1, 100), ("a-spare", 2, 100), ("a-backup", 3, 100)]
    assert RouteTarget.history.filter(history_type="+", trunk=spare_a).count() == 1


def test_a_stale_preview_is_refused_and_nothing_is_written(operator_a, trunks_a, spare_a):
    primary, _ = trunks_a
    make_route(operator_a.tenant, "44", primary)
    preview = bulk.preview_trunk_move(
        user=operator_a, trunk=primary, new_trunk=spare_a, mode=bulk.REPLACE
    )
    make_route(operator_a.tenant, "45", primary)  # someone else, meanwhile
    with pytest.raises(bulk.StalePreview):
        bulk.move_trunk(
            user=operator_a,
            trunk=primary,
            new_trunk=spare_a,
            mode=bulk.REPLACE,
            expected=preview.fingerprint,
        )
    assert RouteTarget.objects.filter(trunk=primary).count() == 2
    assert not RouteTarget.objects.filter(trunk=spare_a).exists()


def test_an_outsider_cannot_preview_or_move_another_tenants_trunk(
    outsider, trunks_a, spare_a, trunks_b, route_a
):
    primary, _ = trunks_a
    with pytest.raises(PermissionDenied):
        bulk.preview_trunk_move(user=outsider, trunk=primary, new_trunk=spare_a, mode="replace")
    with pytest.raises(PermissionDenied):
        bulk.move_trunk(
            user=outsider, trunk=primary, new_trunk=spare_a, mode="replace", expected=""
        )
    with pytest.raises(ValidationError, match="same tenant"):
        bulk.preview_trunk_move(user=outsider, trunk=trunks_b[0], new_trunk=primary, mode="replace")
    assert order(route_a) == [("a-primary", 1, 100), ("a-backup", 2, 100)]


def edit(user, edit: bulk.RouteEdit, routes=None):
    routes = DialPrefix.objects.all() if routes is None else routes
    preview = bulk.preview_edit(user=user, routes=routes, edit=edit)
    return bulk.apply_edit(user=user, routes=routes, edit=edit, expected=preview.fingerprint)


def test_bulk_edit_switches_off_the_filtered_routes_only_and_records_who(
    operator_a, trunks_a, route_b
):
    primary, _ = trunks_a
    for prefix in ("441", "442", "443", "33"):
        make_route(operator_a.tenant, prefix, primary)
    done = edit(
        operator_a,
        bulk.RouteEdit(is_active=False, routing_mode="parallel"),
        DialPrefix.objects.filter(prefix__startswith="44"),
    )
    assert done.count == 3
    assert set(DialPrefix.objects.filter(is_active=False).values_list("prefix", flat=True)) == {
        "441",
        "442",
        "443",
    }
    assert DialPrefix.objects.filter(routing_mode="parallel").count() == 3
    records = DialPrefix.history.filter(history_user=operator_a, history_type="~")
    assert records.count() == 3
    assert records.first().history_change_reason == ("Bulk edit: active=no, routing mode=parallel")
    route_b.refresh_from_db()
    assert route_b.is_active


def test_bulk_edit_adds_sets_and_removes_a_target(operator_a, trunks_a, spare_a):
    primary, _ = trunks_a
    uk = make_route(operator_a.tenant, "44", primary)
    fr = make_route(operator_a.tenant, "33", primary, (spare_a, 5, 10))
    added = edit(operator_a, bulk.RouteEdit(trunk=spare_a, target="add", priority=2, weight=40))
    assert added.count == 1  # France has it already
    assert order(uk) == [("a-primary", 1, 100), ("a-spare", 2, 40)]
    assert order(fr) == [("a-primary", 1, 100), ("a-spare", 5, 10)]
    edit(operator_a, bulk.RouteEdit(trunk=spare_a, target="set", weight=60))
    assert order(uk) == [("a-primary", 1, 100), ("a-spare", 2, 60)]
    assert order(fr) == [("a-primary", 1, 100), ("a-spare", 5, 60)]
    removed = edit(operator_a, bulk.RouteEdit(trunk=primary, target="remove"))
    assert removed.count == 2
    assert order(uk) == [("a-spare", 2, 60)]
    kinds = RouteTarget.history.filter(history_user=operator_a).values_list("history_type")
    assert sorted(k for (k,) in kinds) == ["+", "-", "-", "~", "~"]


def test_bulk_edit_of_an_outsider_never_reaches_the_other_tenant(
    outsider, operator_a, route_a, route_b, trunks_b, trunks_a
):
    done = edit(outsider, bulk.RouteEdit(is_active=False))
    assert (done.selected, done.count) == (1, 1)
    route_a.refresh_from_db()
    assert route_a.is_active
    with pytest.raises(PermissionDenied):
        edit(outsider, bulk.RouteEdit(trunk=trunks_a[1], target="remove"))
    assert order(route_a) == [("a-primary", 1, 100), ("a-backup", 2, 100)]


def test_a_target_edit_across_tenants_is_refused(superuser, route_a, route_b, trunks_a):
    with pytest.raises(ValidationError, match="1 route outside Tenant A"):
        bulk.preview_edit(
            user=superuser,
            routes=DialPrefix.objects.all(),
            edit=bulk.RouteEdit(trunk=trunks_a[0], target="add"),
        )


def test_a_stale_edit_preview_is_refused(operator_a, trunks_a):
    make_route(operator_a.tenant, "441", trunks_a[0])
    routes = DialPrefix.objects.filter(prefix__startswith="44")
    change = bulk.RouteEdit(is_active=False)
    preview = bulk.preview_edit(user=operator_a, routes=routes, edit=change)
    make_route(operator_a.tenant, "442", trunks_a[0])
    with pytest.raises(bulk.StalePreview):
        bulk.apply_edit(
            user=operator_a,
            routes=routes,
            edit=bulk.RouteEdit(is_active=False),
            expected=preview.fingerprint,
        )
    assert not DialPrefix.objects.filter(is_active=False).exists()


def test_an_edit_needs_a_change(operator_a):
    with pytest.raises(ValidationError, match="at least one change"):
        bulk.preview_edit(user=operator_a, routes=DialPrefix.objects.all(), edit=bulk.RouteEdit())


def queries_of_an_edit(user, trunks, spare, routes: int) -> int:
    for n in range(routes):
        make_route(user.tenant, f"4{n:03d}", trunks[0], trunks[1])
    change = bulk.RouteEdit(is_active=False, trunk=spare, target="add")
    with CaptureQueriesContext(connection) as captured:
        edit(user, change)
    DialPrefix.objects.all().delete()
    return len(captured)


def test_the_work_does_not_grow_with_the_number_of_routes(operator_a, trunks_a, spare_a):
    few = queries_of_an_edit(operator_a, trunks_a, spare_a, 3)
    # 30, not more: SQLite inserts ~30 historical routes per statement (999 variables).
    many = queries_of_an_edit(operator_a, trunks_a, spare_a, 30)
    assert many == few


def test_on_a_staged_plan_a_bulk_edit_writes_the_draft_as_a_single_edit_does(
    operator_a, trunks_a, spare_a
):
    primary, _ = trunks_a
    route = make_route(operator_a.tenant, "44", primary)
    publish(route.plan, comment="first")
    preview = bulk.preview_trunk_move(
        user=operator_a, trunk=primary, new_trunk=spare_a, mode=bulk.REPLACE
    )
    assert preview.staged_plans == ["Default"]
    bulk.move_trunk(
        user=operator_a,
        trunk=primary,
        new_trunk=spare_a,
        mode=bulk.REPLACE,
        expected=preview.fingerprint,
    )
    edit(operator_a, bulk.RouteEdit(is_active=False))
    assert order(route) == [("a-spare", 1, 100)]  # the draft
    live = PublishedRoute.objects.get(plan=route.plan, prefix="44", until__isnull=True)
    assert live.is_active  # calls still use version 1 until a publish
    assert live.targets.split(":")[0] == str(primary.pk)
    publish(route.plan, comment="bulk")
    live = PublishedRoute.objects.get(plan=route.plan, prefix="44", until__isnull=True)
    assert not live.is_active
    assert live.targets.split(":")[0] == str(spare_a.pk)


def test_a_failover_after_the_last_priority_is_refused_not_a_crash(operator_a, trunks_a, spare_a):
    primary, _ = trunks_a
    route = make_route(operator_a.tenant, "44", (primary, bulk.MAX_PRIORITY, 100))
    with pytest.raises(ValidationError, match="no priority after it"):
        move(operator_a, primary, spare_a, bulk.FAILOVER)
    assert order(route) == [("a-primary", bulk.MAX_PRIORITY, 100)]


def test_a_failover_leaves_the_routes_that_have_it_and_does_not_count_them(
    operator_a, trunks_a, spare_a
):
    primary, _ = trunks_a
    uk = make_route(operator_a.tenant, "44", primary)
    de = make_route(operator_a.tenant, "49", primary, (spare_a, 9, 10))
    preview = bulk.preview_trunk_move(
        user=operator_a, trunk=primary, new_trunk=spare_a, mode=bulk.FAILOVER
    )
    assert (preview.selected, preview.count) == (2, 1)
    assert [r.prefix for r in preview.sample] == ["44"]
    bulk.move_trunk(
        user=operator_a,
        trunk=primary,
        new_trunk=spare_a,
        mode=bulk.FAILOVER,
        expected=preview.fingerprint,
    )
    assert order(uk) == [("a-primary", 1, 100), ("a-spare", 2, 100)]
    assert order(de) == [("a-primary", 1, 100), ("a-spare", 9, 10)]


def test_an_edit_that_changes_what_the_filter_selects_still_applies_to_every_counted_route(
    operator_a, trunks_a, spare_a
):
    for prefix in ("441", "442"):
        make_route(operator_a.tenant, prefix, trunks_a[0])
    active = DialPrefix.objects.filter(is_active=True)
    done = edit(operator_a, bulk.RouteEdit(is_active=False, trunk=spare_a, target="add"), active)
    assert done.count == 2
    assert RouteTarget.objects.filter(trunk=spare_a).count() == 2
    assert not DialPrefix.objects.filter(is_active=True).exists()
