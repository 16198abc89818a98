"""Trunk health: the policy (pure), its writer, the resolver's use of it, the ingest feeding it."""

from __future__ import annotations

import datetime as dt

import pytest

from outcomes.ingest import Aggregator
from outcomes.records import Attempt, Attribution
from routing import changes, health
from routing.compiled import CompiledRouteTable
from routing.health import HEALTHY, UNHEALTHY, Health, Policy, apply, is_failure
from routing.models import TrunkHealth, TrunkHealthEvent
from routing.resolver import CallRequest, Outcome, RoutingDefaults, resolve
from routing.service import decide
from routing.tables import DatabaseRouteTable

pytestmark = pytest.mark.django_db

T0 = 1_764_449_000.0  # 2025-11-29 20:43:20 UTC, 20 s into a 60 s window
POLICY = Policy(window=60, min_attempts=10, failure_ratio=50, consecutive=5, cooldown=60)


def outcomes(*failed: bool, start: float = T0, step: float = 0.1) -> list[tuple[float, bool]]:
    return [(start + n * step, f) for n, f in enumerate(failed)]


# --- The policy, without a database ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "failed"),
    [(200, False), (486, False), (404, False), (603, False), (408, True), (503, True), (0, True)],
)
def test_only_408_5xx_and_no_reply_are_failures(code, failed):
    assert is_failure(code) is failed


def test_a_failure_ratio_over_min_attempts_makes_it_unhealthy():
    policy = Policy(min_attempts=10, failure_ratio=50, consecutive=None)
    mixed = outcomes(*[True, False] * 4, True)  # 5 of 9 failed: too few attempts yet
    after, moves = apply(policy, Health(), mixed, now=T0 + 1)
    assert (after.state, after.window_attempts, after.window_failures) == (HEALTHY, 9, 5)
    assert moves == []
    after, moves = apply(policy, after, [(T0 + 1, False)], now=T0 + 2)  # 5 of 10: 50%
    assert after.state == UNHEALTHY
    assert moves == [health.Transition(T0 + 2, UNHEALTHY, "5 of 10 attempts failed in 60 s")]
    assert (after.since, after.until) == (T0 + 2, T0 + 2 + 60)


def test_below_the_ratio_it_stays_healthy():
    policy = Policy(min_attempts=10, failure_ratio=50, consecutive=None)
    after, moves = apply(policy, Health(), outcomes(*[True] * 4 + [False] * 6), now=T0 + 1)
    assert (after.state, moves) == (HEALTHY, [])


def test_consecutive_failures_make_it_unhealthy_and_a_success_resets_them():
    policy = Policy(failure_ratio=None, consecutive=3)
    after, moves = apply(policy, Health(), outcomes(True, True, False, True, True), now=T0 + 1)
    assert (after.state, after.consecutive_failures) == (HEALTHY, 2)
    after, moves = apply(policy, after, [(T0 + 1, True)], now=T0 + 2)
    assert after.state == UNHEALTHY
    assert moves[0].reason == "3 failed attempts in a row"


def test_with_both_rules_off_it_is_never_taken_out():
    policy = Policy(failure_ratio=None, consecutive=None)
    after, _ = apply(policy, Health(), outcomes(*[True] * 100), now=T0 + 20)
    assert after.state == HEALTHY


def test_the_window_tumbles():
    policy = Policy(window=60, min_attempts=10, failure_ratio=50, consecutive=None)
    # 8 failures late in one window, 8 early in the next: never 10 attempts in one window.
    late = outcomes(*[True] * 8, start=T0 + 30, step=1)  # 20:43:50 .. 20:43:57
    early = outcomes(*[True] * 8, start=T0 + 41, step=1)  # 20:44:01 .. 20:44:08
    after, moves = apply(policy, Health(), late + early, now=T0 + 50)
    assert (after.state, after.window_attempts, moves) == (HEALTHY, 8, [])
    assert after.window_start == T0 + 40  # 20:44:00, a multiple of 60 s


def test_outcomes_during_the_cool_down_are_ignored():
    sick = Health(state=UNHEALTHY, since=T0, until=T0 + 60, reason="x")
    after, moves = apply(POLICY, sick, outcomes(False, True, False, start=T0 + 1), now=T0 + 5)
    assert (after, moves) == (sick, [])


def test_after_the_cool_down_a_success_recovers_it():
    sick = Health(state=UNHEALTHY, since=T0, until=T0 + 60, consecutive_failures=5)
    after, moves = apply(POLICY, sick, [(T0 + 61, False)], now=T0 + 62)
    assert (after.state, after.since, after.until, after.consecutive_failures) == (
        HEALTHY,
        T0 + 62,
        None,
        0,
    )
    assert moves == [health.Transition(T0 + 62, HEALTHY, "recovered: a half-open probe succeeded")]


def test_after_the_cool_down_a_failure_starts_a_new_one():
    sick = Health(state=UNHEALTHY, since=T0, until=T0 + 60)
    after, moves = apply(POLICY, sick, [(T0 + 61, True), (T0 + 61.5, False)], now=T0 + 62)
    # The success came after the probe failed, inside the new cool-down: a call in flight.
    assert (after.state, after.until) == (UNHEALTHY, T0 + 62 + 60)
    assert [m.reason for m in moves] == ["a half-open probe failed"]


# --- The writer ----------------------------------------------------------------------


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def test_observe_writes_state_history_and_one_route_change(trunks_a):
    trunk = trunks_a[0]
    before = changes.current_version()
    assert health.observe({trunk.pk: outcomes(True, True)}, at(T0 + 1)) == 0
    row = TrunkHealth.objects.get(trunk=trunk)
    assert (row.state, row.consecutive_failures) == (HEALTHY, 2)
    assert changes.current_version() == before  # counters only: no reload anywhere
    assert health.observe({trunk.pk: outcomes(True, True, True, start=T0 + 2)}, at(T0 + 3)) == 1
    row.refresh_from_db()
    assert (row.state, row.until, row.reason) == (
        UNHEALTHY,
        at(T0 + 63),
        "5 failed attempts in a row",
    )
    assert changes.current_version() == before + 1
    event = TrunkHealthEvent.objects.get(trunk=trunk)
    assert (event.state, event.override, event.user) == (UNHEALTHY, "auto", None)


def test_override_writes_history_with_the_user_and_a_change(trunks_a, operator_a):
    trunk = trunks_a[0]
    before = changes.current_version()
    health.override(trunk, "down", operator_a, "carrier maintenance")
    row = TrunkHealth.objects.get(trunk=trunk)
    assert (row.override, row.state) == ("down", HEALTHY)
    event = TrunkHealthEvent.objects.get(trunk=trunk)
    assert (event.user, event.reason) == (operator_a, "forced out of service: carrier maintenance")
    assert changes.current_version() == before + 1
    with pytest.raises(ValueError, match="override must be one of"):
        health.override(trunk, "sideways", operator_a)


# --- The resolver ----------------------------------------------------------------------


def sicken(trunk, *, until: float, since: float = T0, reason="6 of 10 attempts failed in 60 s"):
    TrunkHealth.objects.update_or_create(
        trunk=trunk,
        defaults={"state": UNHEALTHY, "since": at(since), "until": at(until), "reason": reason},
    )


def call(call_id="c1", when=T0 + 10, percent=10, table=None):
    return resolve(
        CallRequest(callee="+33123", source_ip="192.0.2.10", call_id=call_id, at=at(when)),
        table=table or DatabaseRouteTable(),
        defaults=RoutingDefaults(health_probe_percent=percent),
    )


def test_an_unhealthy_trunk_is_skipped_with_why_and_until_when(route_a, trunks_a):
    sicken(trunks_a[0], until=T0 + 60)
    decision = call()
    assert [r.trunk for r in decision.routes] == ["a-backup"]
    assert (
        "skipped Carrier A/a-primary: unhealthy since 20:43:20 UTC "
        "(6 of 10 attempts failed in 60 s), cool-down until 20:44:20"
    ) in decision.trace


def test_all_trunks_unhealthy_is_no_usable_trunk(route_a, trunks_a):
    for trunk in trunks_a:
        sicken(trunk, until=T0 + 60)
    decision = call()
    assert (decision.outcome, decision.code, decision.reason) == (
        Outcome.NO_ROUTE,
        503,
        "No Active Trunk",
    )


def test_a_half_open_trunk_gets_the_same_share_of_calls_every_time(route_a, trunks_a):
    sicken(trunks_a[0], until=T0 + 60)
    picked = {
        n for n in range(1000) if call(f"call-{n}", when=T0 + 61).routes[0].trunk == "a-primary"
    }
    assert 60 < len(picked) < 140  # about 10%
    again = {
        n for n in range(1000) if call(f"call-{n}", when=T0 + 61).routes[0].trunk == "a-primary"
    }
    assert again == picked  # a retransmission, another process: the same answer
    skipped = call(f"call-{min(set(range(1000)) - picked)}", when=T0 + 61)
    assert "skipped Carrier A/a-primary: half-open: probing with 10% of calls" in skipped.trace
    probing = call(f"call-{min(picked)}", when=T0 + 61)
    assert "Carrier A/a-primary is half-open: this call probes it" in probing.trace
    assert call("any", when=T0 + 61, percent=0).routes[0].trunk == "a-backup"


def test_the_probe_share_comes_from_the_setting(route_a, trunks_a, settings):
    sicken(trunks_a[0], until=T0 + 60)
    settings.ROUTING_HEALTH_PROBE_PERCENT = 100
    request = CallRequest(callee="+33123", source_ip="192.0.2.10", call_id="x", at=at(T0 + 61))
    assert decide(request).routes[0].trunk == "a-primary"
    settings.ROUTING_HEALTH_PROBE_PERCENT = 0
    assert decide(request).routes[0].trunk == "a-backup"


def test_forced_up_ignores_the_state_and_forced_down_takes_it_out(route_a, trunks_a, operator_a):
    primary = trunks_a[0]
    sicken(primary, until=T0 + 60)
    health.override(primary, "up", operator_a)
    assert call().routes[0].trunk == "a-primary"
    health.override(primary, "down", operator_a)
    decision = call()
    assert [r.trunk for r in decision.routes] == ["a-backup"]
    assert "skipped Carrier A/a-primary: taken out of service by an operator" in decision.trace


def test_the_compiled_table_sees_a_state_change_at_its_next_poll(route_a, trunks_a):
    compiled = CompiledRouteTable(background=False, poll_interval=0)
    compiled.refresh()
    assert call(table=compiled).routes[0].trunk == "a-primary"
    health.observe({trunks_a[0].pk: outcomes(*[True] * 5)}, at(T0 + 1))
    decision = call(when=T0 + 2, table=compiled)
    assert [r.trunk for r in decision.routes] == ["a-backup"]
    assert any("unhealthy since 20:43:21 UTC (5 failed" in line for line in decision.trace)
    health.override(trunks_a[0], "up", None)
    assert call(when=T0 + 2, table=compiled).routes[0].trunk == "a-primary"


def test_both_tables_read_the_same_health(route_a, trunks_a):
    sicken(trunks_a[0], until=T0 + 60)
    compiled = CompiledRouteTable(background=False, poll_interval=0)
    compiled.refresh()
    mine = compiled.routes(route_a.plan_id, ["33"], None)[0][1]
    theirs = DatabaseRouteTable().routes(route_a.plan_id, ["33"], None)[0][1]
    assert {t.trunk for t in mine} == {t.trunk for t in theirs}
    sick = next(t.trunk for t in mine if t.trunk.id == trunks_a[0].pk)
    assert (sick.health_state, sick.health_since, sick.health_until) == (UNHEALTHY, T0, T0 + 60)


# --- Outcome events in, trunk out -----------------------------------------------------


def attempt(n: int, trunk, code: int, when: float, tenant="tenant-a") -> Attempt:
    of = Attribution(decision_id=f"{n:032x}", tenant=tenant, route=0, trunk_id=trunk.pk, at=when)
    return Attempt(of, code)


def test_failed_attempts_take_the_trunk_out_of_routing(route_a, trunks_a):
    aggregator = Aggregator(clock=lambda: T0 + 5)
    for n in range(6):
        assert aggregator.add(attempt(n, trunks_a[0], 503 if n % 2 else 408, T0 + n * 0.5)) is None
    aggregator.flush()
    row = TrunkHealth.objects.get(trunk=trunks_a[0])
    assert (row.state, row.reason) == (UNHEALTHY, "5 failed attempts in a row")
    assert [r.trunk for r in call(when=T0 + 6).routes] == ["a-backup"]


def test_another_tenants_events_do_not_touch_a_trunk(route_a, trunks_a, tenant_b):
    aggregator = Aggregator(clock=lambda: T0 + 5)
    for n in range(6):
        aggregator.add(attempt(n, trunks_a[0], 503, T0 + n, tenant="tenant-b"))
    aggregator.flush()
    assert not TrunkHealth.objects.exists()


def test_a_failed_health_update_keeps_buckets_and_outcomes(route_a, trunks_a, caplog):
    broken = [True]

    def observer(batch, now):
        if broken[0]:
            raise RuntimeError("database went away")
        from outcomes.store import observe_health

        return observe_health(batch, now)

    aggregator = Aggregator(clock=lambda: T0 + 5, observer=observer)
    for n in range(3):
        aggregator.add(attempt(n, trunks_a[0], 503, T0 + n))
    written = aggregator.flush()  # does not raise
    assert written.events == 3
    assert "trunk health update failed" in caplog.text
    for n in range(3, 5):
        aggregator.add(attempt(n, trunks_a[0], 503, T0 + n))
    broken[0] = False
    aggregator.flush()
    assert TrunkHealth.objects.get(trunk=trunks_a[0]).state == UNHEALTHY  # 3 kept + 2 new


def test_the_outcomes_kept_per_trunk_are_bounded(trunks_a):
    aggregator = Aggregator(clock=lambda: T0 + 5, writer=lambda deltas: None)
    for n in range(1500):
        aggregator.add(attempt(n, trunks_a[0], 200, T0))
    assert len(aggregator._health["tenant-a", trunks_a[0].pk]) == 1000
