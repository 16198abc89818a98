"""Route rules: caller conditions and schedules, through the real database route table.

The precedence (routing.resolver.precedence, docs/route-table.md): among routes
whose caller condition and schedule hold, the longer callee prefix, then the
longer caller prefix, then a caller pattern, then a scheduled route before the
unscheduled fallback.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from routing.compiled import CompiledRouteTable
from routing.models import Schedule
from routing.resolver import CallRequest, Outcome, resolve
from routing.service import decide
from routing.tables import DatabaseRouteTable
from tests.factories import make_route, make_trunk

pytestmark = pytest.mark.django_db

# Monday 1 June 2026 in Paris (UTC+2): 10:00 and 22:00 local.
MON_10 = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
MON_22 = dt.datetime(2026, 6, 1, 20, 0, tzinfo=dt.UTC)
PEAK = "Mon-Fri 08:00-20:00"


@pytest.fixture
def three(tenant_a, trunks_a):
    """Three trunks: a (primary), b (backup), c (a third carrier)."""
    return (*trunks_a, make_trunk(tenant_a, "c-main", carrier="Carrier C", host="192.0.2.103"))


@pytest.fixture
def peak(tenant_a):
    return Schedule.objects.create(
        tenant=tenant_a, name="Peak", timezone="Europe/Paris", periods=PEAK
    )


def call(callee: str, caller: str = "4411", at: dt.datetime | None = MON_10, **fields):
    request = CallRequest(callee=callee, caller=caller, source_ip="192.0.2.10", at=at, **fields)
    return decide(request)


def carriers(decision) -> list[str]:
    return [route.carrier for route in decision.routes]


# --- The case table --------------------------------------------------------------------


# Each case: routes as (prefix, caller prefix or "~" pattern, scheduled?, trunk index),
# then the call's callee, caller and time, then the carrier that gets it.
CASES = {
    "a caller condition that matches wins over any caller": (
        [("44", "", False, 0), ("44", "3312", False, 2)],
        ("+4420", "3312999", MON_22),
        "Carrier C",
    ),
    "a caller condition that does not match is passed over": (
        [("44", "", False, 0), ("44", "3312", False, 2)],
        ("+4420", "4411", MON_22),
        "Carrier A",
    ),
    "the longer caller prefix wins": (
        [("44", "33", False, 0), ("44", "3312", False, 2)],
        ("+4420", "+331234", MON_22),
        "Carrier C",
    ),
    "the longer callee prefix wins over a caller condition": (
        [("44", "3312", False, 2), ("442", "", False, 0)],
        ("+4420", "3312", MON_22),
        "Carrier A",
    ),
    "a scheduled route in force wins over the unscheduled one": (
        [("44", "", False, 0), ("44", "", True, 2)],
        ("+4420", "4411", MON_10),
        "Carrier C",
    ),
    "outside its schedule the unscheduled route is the fallback": (
        [("44", "", False, 0), ("44", "", True, 2)],
        ("+4420", "4411", MON_22),
        "Carrier A",
    ),
    "a caller condition wins over a schedule": (
        [("44", "", True, 0), ("44", "3312", False, 2)],
        ("+4420", "3312", MON_10),
        "Carrier C",
    ),
    "a scheduled caller route wins over the unscheduled caller route": (
        [("44", "3312", False, 0), ("44", "3312", True, 2), ("44", "", True, 1)],
        ("+4420", "3312", MON_10),
        "Carrier C",
    ),
    "a caller prefix wins over a caller pattern": (
        [("44", "~^33\\d+$", False, 0), ("44", "33", False, 2)],
        ("+4420", "3312", MON_22),
        "Carrier C",
    ),
    "a caller pattern wins over any caller": (
        [("44", "", False, 0), ("44", "~^(33|44)[67]\\d{2}$", False, 2)],
        ("+4420", "+33612", MON_22),
        "Carrier C",
    ),
    "a caller pattern must match the whole caller": (
        [("44", "", False, 0), ("44", "~(33|44)[67]", False, 2)],
        ("+4420", "336123", MON_22),
        "Carrier A",
    ),
    "a caller pattern that does not match is passed over": (
        [("44", "", False, 0), ("44", "~^(33|44)[67]\\d{2}$", False, 2)],
        ("+4420", "33512", MON_22),
        "Carrier A",
    ),
    "a caller that is not a number matches no pattern": (
        [("44", "", False, 0), ("44", "~.*", False, 2)],
        ("+4420", "anonymous", MON_22),
        "Carrier A",
    ),
    "a caller pattern wins over a schedule": (
        [("44", "", True, 0), ("44", "~^33\\d*$", False, 2)],
        ("+4420", "3312", MON_10),
        "Carrier C",
    ),
    "a scheduled caller pattern route wins over the unscheduled one": (
        [("44", "~^33\\d*$", False, 0), ("44", "~^33\\d*$", True, 2)],
        ("+4420", "3312", MON_10),
        "Carrier C",
    ),
    "the longer callee prefix wins over a caller pattern": (
        [("44", "~^33\\d*$", False, 2), ("442", "", False, 0)],
        ("+4420", "3312", MON_22),
        "Carrier A",
    ),
    "the longer callee prefix wins over a schedule in force": (
        [("44", "", True, 2), ("442", "", False, 0)],
        ("+4420", "4411", MON_10),
        "Carrier A",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_route_precedence(case, tenant_a, three, peak):
    routes, (callee, caller, at), expected = CASES[case]
    for prefix, condition, scheduled, trunk in routes:
        pattern = condition[1:] if condition.startswith("~") else ""
        make_route(
            tenant_a,
            prefix,
            three[trunk],
            caller_prefix="" if pattern else condition,
            caller_pattern=pattern,
            schedule=peak if scheduled else None,
        )
    for table in (DatabaseRouteTable(), compiled()):
        decision = resolve(
            CallRequest(callee=callee, caller=caller, source_ip="192.0.2.10", at=at), table=table
        )
        assert decision.outcome == Outcome.ROUTED, decision.trace
        assert carriers(decision)[0] == expected, decision.trace


def compiled() -> CompiledRouteTable:
    table = CompiledRouteTable(background=False, poll_interval=3600)
    table.refresh()
    return table


# --- The trace names every rule ------------------------------------------------------


def test_the_trace_names_the_caller_rule_and_the_schedule_rule(tenant_a, three, peak):
    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[1], schedule=peak)
    make_route(tenant_a, "44", three[2], caller_prefix="3312")
    decision = call("+4420", caller="4411", at=MON_22)
    assert "route 44 caller 3312: caller 4411 does not start with 3312" in decision.trace
    assert "route 44 (Peak): outside Mon-Fri 08:00-20:00 Europe/Paris" in decision.trace
    assert decision.matched.schedule_id is None
    assert carriers(decision) == ["Carrier A"]


def test_a_caller_that_is_not_a_number_matches_no_caller_condition(tenant_a, three):
    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[2], caller_prefix="33")
    decision = call("+4420", caller="anonymous")
    assert carriers(decision) == ["Carrier A"]
    assert "route 44 caller 33: caller (not a number) does not start with 33" in decision.trace


def test_validity_dates_switch_routes_at_an_instant(tenant_a, three):
    switch = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    old = Schedule.objects.create(tenant=tenant_a, name="Until noon", valid_until=switch)
    new = Schedule.objects.create(tenant=tenant_a, name="From noon", valid_from=switch)
    make_route(tenant_a, "44", three[0], schedule=old)
    make_route(tenant_a, "44", three[2], schedule=new)
    assert carriers(call("+4420", at=switch - dt.timedelta(seconds=1))) == ["Carrier A"]
    assert carriers(call("+4420", at=switch)) == ["Carrier C"]


def test_without_a_time_the_call_is_now(tenant_a, three):
    now = timezone.now()
    past = Schedule.objects.create(tenant=tenant_a, name="Past", valid_until=now)
    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[2], schedule=past)
    assert carriers(call("+4420", at=None)) == ["Carrier A"]
    past.valid_until = now + dt.timedelta(hours=1)
    past.save()
    assert carriers(call("+4420", at=None)) == ["Carrier C"]


def test_no_route_in_force_and_no_fallback_is_no_route(tenant_a, three, peak):
    make_route(tenant_a, "44", three[0], schedule=peak)
    decision = call("+4420", at=MON_22)
    assert (decision.outcome, decision.code) == (Outcome.NO_ROUTE, 404)


# --- Fallback walks the precedence order ------------------------------------------------


def test_a_scheduled_route_without_usable_targets_falls_back_to_the_unscheduled(
    tenant_a, three, peak
):
    three[2].is_active = False
    three[2].save()
    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[2], schedule=peak)
    decision = call("+4420", at=MON_10)
    assert carriers(decision) == ["Carrier A"]
    assert "prefix 44 (Peak) has no usable target: falling back to 44 (route)" in decision.trace


def test_a_final_scheduled_route_does_not_fall_back(tenant_a, three, peak):
    three[2].is_active = False
    three[2].save()
    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[2], schedule=peak, is_final=True)
    decision = call("+4420", at=MON_10)
    assert (decision.outcome, decision.code) == (Outcome.NO_ROUTE, 503)
    assert "prefix 44 (Peak) is final: no fallback to the next route" in decision.trace


def test_a_caller_route_falls_back_to_the_any_caller_route_then_the_shorter_prefix(tenant_a, three):
    for trunk in three[:2]:
        trunk.is_active = False
        trunk.save()
    make_route(tenant_a, "44", three[0], caller_prefix="33")
    make_route(tenant_a, "44", three[1])
    make_route(tenant_a, "4", three[2])
    decision = call("+4420", caller="3312")
    assert carriers(decision) == ["Carrier C"]
    assert [row.prefix for row in [decision.matched]] == ["4"]


# --- Targets with a schedule ---------------------------------------------------------------


def test_a_target_outside_its_schedule_is_skipped_with_the_reason(tenant_a, three, peak):
    route = make_route(tenant_a, "44", three[0], three[2])
    route.targets.filter(trunk=three[0]).update(schedule=peak)
    for table in (DatabaseRouteTable(), compiled()):
        request = CallRequest(callee="+4420", caller="1", source_ip="192.0.2.10", at=MON_22)
        decision = resolve(request, table=table)
        assert carriers(decision) == ["Carrier C"]
        assert decision.skipped == (
            "Carrier A/a-primary: schedule Peak: outside Mon-Fri 08:00-20:00 Europe/Paris",
        )
        at_peak = resolve(
            CallRequest(callee="+4420", source_ip="192.0.2.10", at=MON_10), table=table
        )
        assert carriers(at_peak) == ["Carrier A", "Carrier C"]


# --- Cost -----------------------------------------------------------------------------------


def test_schedules_cost_one_query_and_only_when_used(
    tenant_a, three, peak, django_assert_num_queries
):
    # The database tables: 5 queries per call (the blocklist screen is one of them);
    # a schedule in play adds one.
    make_route(tenant_a, "44", three[0])
    with django_assert_num_queries(5):
        call("+4420")
    make_route(tenant_a, "44", three[2], schedule=peak)
    make_route(tenant_a, "44", three[1], caller_prefix="33")
    with django_assert_num_queries(6):
        call("+4420")
    make_route(tenant_a, "4", three[1], schedule=Schedule.objects.create(tenant=tenant_a, name="x"))
    with django_assert_num_queries(6):
        call("+4420")


def test_the_compiled_table_answers_rules_without_a_query(tenant_a, three, peak):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[2], schedule=peak)
    table = compiled()
    table._next_check = float("inf")
    request = CallRequest(callee="+4420", source_ip="192.0.2.10", at=MON_10)
    with CaptureQueriesContext(connection) as queries:
        assert carriers(resolve(request, table=table)) == ["Carrier C"]
    assert len(queries) == 0


def test_a_schedule_change_reaches_the_compiled_table(tenant_a, three, peak):
    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[2], schedule=peak)
    table = CompiledRouteTable(background=False, poll_interval=0)
    table.refresh()
    request = CallRequest(callee="+4420", source_ip="192.0.2.10", at=MON_22)
    assert carriers(resolve(request, table=table)) == ["Carrier A"]
    peak.periods = "Mon-Fri 08:00-23:00"
    peak.save()
    assert carriers(resolve(request, table=table)) == ["Carrier C"]


def test_another_tenants_schedule_is_never_read(tenant_a, tenant_b, three, trunks_b):
    other = Schedule.objects.create(tenant=tenant_b, name="B's")
    route = make_route(tenant_a, "44", three[0])
    # Written around the checks (they refuse it): the resolver still ignores it.
    type(route).objects.filter(pk=route.pk).update(schedule=other)
    for table in (DatabaseRouteTable(), compiled()):
        request = CallRequest(callee="+4420", source_ip="192.0.2.10", at=MON_10)
        decision = resolve(request, table=table)
        assert decision.outcome == Outcome.NO_ROUTE
        assert f"route 44 (schedule {other.pk}): schedule {other.pk} is missing or not valid" in (
            decision.trace
        )


# --- The simulators take the call's time ------------------------------------------------


@pytest.fixture
def peak_and_fallback(tenant_a, three, peak):
    make_route(tenant_a, "44", three[0])
    make_route(tenant_a, "44", three[2], schedule=peak)


def test_the_simulator_page_takes_the_call_time(client, operator_a, peak_and_fallback):
    client.force_login(operator_a)
    at_peak = client.get("/admin/simulator/", {"callee": "+4420", "at": "2026-06-01T10:00+02:00"})
    assert [line.route.carrier for line in at_peak.context["result"].lines] == ["Carrier C"]
    late = client.get("/admin/simulator/", {"callee": "+4420", "at": "2026-06-01 20:00"})  # UTC
    assert [line.route.carrier for line in late.context["result"].lines] == ["Carrier A"]
    assert "route 44 (Peak): outside Mon-Fri 08:00-20:00 Europe/Paris" in late.content.decode()


def test_the_simulate_api_takes_the_call_time(operator_a, peak_and_fallback):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_login(operator_a)
    answers = [
        api.post("/api/v1/simulate", {"callee": "+4420", "at": at}, format="json").json()
        for at in ("2026-06-01T10:00:00+02:00", "2026-06-01T22:00:00+02:00")
    ]
    assert [a["routes"][0]["carrier"] for a in answers] == ["Carrier C", "Carrier A"]
    bad = api.post("/api/v1/simulate", {"callee": "+4420", "at": "tea time"}, format="json")
    assert bad.status_code == 400
    assert "at" in bad.json()


def test_the_route_command_takes_the_call_time(capsys, peak_and_fallback):
    import json

    from django.core.management import call_command

    for at, carrier in (("2026-06-01T10:00+02:00", "Carrier C"), ("2026-06-01T20:00", "Carrier A")):
        call_command("route", "--tenant", "tenant-a", "--callee", "+4420", "--at", at, "--json")
        assert json.loads(capsys.readouterr().out)["routes"][0]["carrier"] == carrier
