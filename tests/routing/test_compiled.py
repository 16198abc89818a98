"""The compiled route table answers exactly like the database, with no query per call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from routing import changes
from routing.compiled import CompiledRouteTable, PrefixTable, compiled_route_table
from routing.models import (
    Carrier,
    Customer,
    CustomerSource,
    DialPrefix,
    RouteTarget,
    RoutingPlan,
    Schedule,
    Trunk,
)
from routing.resolver import CallRequest, Decision, resolve
from routing.rows import RouteRow, names
from routing.service import get_route_table
from routing.tables import DatabaseRouteTable
from tenants.models import Tenant, TenantSource
from tests.factories import default_plan, make_route, make_tenant, make_trunk

COUNTRIES = ["1", "33", "34", "44", "49", "39", "351", "352", "7", "86", "880", "971"]


def build_table(tenant: Tenant, rng: random.Random, size: int) -> list[str]:
    """A wholesale-like table of `size` prefixes with every row kind over two plans, and
    customers recognised by every kind of rule; returns the prefixes."""
    trunks = [
        make_trunk(tenant, f"{tenant.slug}-t{n}", carrier=f"{tenant.slug} carrier {n % 4}")
        for n in range(10)
    ]
    Trunk.objects.filter(pk=trunks[3].pk).update(is_active=False)
    plan = default_plan(tenant)
    gold = RoutingPlan.objects.create(tenant=tenant, name="Gold")
    network = tenant.sources.order_by("network").first().network
    inner = str(next(ipaddress.ip_network(network).subnets(new_prefix=28)))
    by_source = Customer.objects.create(tenant=tenant, name="by source", plan=gold)
    CustomerSource.objects.create(customer=by_source, network=inner)
    CustomerSource.objects.create(customer=by_source, network=network, port=5070)
    Customer.objects.create(tenant=tenant, name="by prefix", plan=gold, tech_prefix="77")
    Customer.objects.create(tenant=tenant, name="by account", plan=plan, account="acc")
    Customer.objects.create(tenant=tenant, name="off", plan=gold, account="off", is_active=False)
    Carrier.objects.filter(pk=trunks[2].carrier_id).update(is_active=False)
    prefixes: set[str] = {""}  # in both plans, below
    while len(prefixes) < size:
        length = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 20])  # 20 digits: beyond the packed keys
        prefixes.add(rng.choice(COUNTRIES) + "".join(rng.choices("0123456789", k=length)))
    rows = []
    for prefix in sorted(prefixes):
        action = rng.choices(["route", "reject", "location"], weights=[90, 7, 3])[0]
        low = rng.choice([None, None, None, len(prefix) + 2])
        rows.append(
            DialPrefix(
                tenant=tenant,
                plan=gold if prefix and rng.random() < 0.4 else plan,
                prefix=prefix,
                action=action,
                routing_mode=rng.choice(["serial", "parallel"]),
                reject_code=rng.choice([403, 404, 486]) if action == "reject" else None,
                reject_reason="Blocked" if action == "reject" and rng.random() < 0.5 else "",
                min_length=low,
                max_length=rng.choice([None, None, None, (low or len(prefix)) + 6]),
                is_active=rng.random() > 0.05,
                is_final=rng.random() < 0.3,
                description=rng.choice(["", "mobile", "fixed", "premium"]),
            )
        )
    rows.append(DialPrefix(tenant=tenant, plan=gold, prefix="", action="reject", reject_code=404))
    # Route rules on a share of the prefixes: caller conditions (prefixes, and "~"
    # patterns) and two disjoint schedules (peak, off-peak) beside the unscheduled
    # fallback, in two time zones.
    peak, night, promo = schedules_of(tenant)
    for base in [row for row in rows if row.prefix and rng.random() < 0.25]:
        for caller, schedule in rng.sample(
            [
                ("33", None),
                ("331", None),
                ("", peak),
                ("", night),
                ("33", peak),
                ("44", promo),
                ("~^33[0-9]{3,}$", None),
                ("~^44[0-9]+$", peak),
            ],
            rng.randint(1, 3),
        ):
            pattern = caller[1:] if caller.startswith("~") else ""
            rows.append(
                DialPrefix(
                    tenant=tenant,
                    plan=base.plan,
                    prefix=base.prefix,
                    caller_prefix="" if pattern else caller,
                    caller_pattern=pattern,
                    schedule=schedule,
                    action=rng.choices(["route", "reject"], weights=[90, 10])[0],
                    reject_code=403,
                    routing_mode=base.routing_mode,
                    is_active=rng.random() > 0.05,
                    is_final=rng.random() < 0.3,
                )
            )
    created = DialPrefix.objects.bulk_create(rows)
    targets = [
        RouteTarget(
            prefix=row,
            trunk=trunk,
            priority=rng.randint(1, 3),
            weight=rng.choice([10, 30, 70, 100]),
            schedule=rng.choice([None, None, None, None, peak, night, promo]),
        )
        for row in created
        if row.action == "route"
        for trunk in rng.sample(trunks, rng.randint(0, 4))
    ]
    RouteTarget.objects.bulk_create(targets)
    return sorted(prefixes)


def schedules_of(tenant: Tenant) -> tuple[Schedule, Schedule, Schedule]:
    return (
        Schedule.objects.create(
            tenant=tenant, name="Peak", timezone="Europe/Paris", periods="Mon-Fri 08:00-20:00"
        ),
        Schedule.objects.create(
            tenant=tenant,
            name="Off-peak",
            timezone="Europe/Paris",
            periods="Mon-Fri 00:00-08:00; Mon-Fri 20:00-24:00; Sat-Sun",
        ),
        Schedule.objects.create(
            tenant=tenant,
            name="Promo",
            timezone="America/New_York",
            periods="Sat-Sun 10:00-18:00",
            valid_until=WEEK_START + dt.timedelta(days=4),
        ),
    )


WEEK_START = dt.datetime(2026, 3, 27, tzinfo=dt.UTC)  # a week over Paris's spring forward


def random_calls(rng: random.Random, prefixes: list[str], count: int) -> list[CallRequest]:
    sources = [
        "192.0.2.7",
        "192.0.2.100",
        "198.51.100.9",
        "198.51.100.200",
        "2001:db8:a::5",
        "203.0.113.1",
        "::ffff:192.0.2.8",
    ]
    calls = []
    for n in range(count):
        base = rng.choice(prefixes)
        number = base + "".join(rng.choices("0123456789", k=rng.randint(0, 9)))
        calls.append(
            CallRequest(
                callee=rng.choice(["+", "", "", "77"]) + (number or "5"),
                caller=rng.choice(["100", "+33123456789", "alice", "3312", "+441234"]),
                source_ip=rng.choice(sources),
                source_port=rng.choice([None, 5060, 5070]),
                account=rng.choice(["", "", "acc", "off", "nobody"]),
                tenant=rng.choice([None, None, None, "tenant-a", "tenant-b", "nobody"]),
                call_id=f"call-{n}",
                from_uri="sip:100@pbx.example.net",
                at=WEEK_START + dt.timedelta(seconds=rng.randint(0, 7 * 86400)),
            )
        )
    calls.append(CallRequest(callee="alice", caller="100", source_ip="192.0.2.7"))
    calls.append(CallRequest(callee="<sip:bad>", caller="100", source_ip="192.0.2.7"))
    return calls


def same(a: Decision, b: Decision) -> bool:
    return dataclasses.replace(a, decision_id="") == dataclasses.replace(b, decision_id="")


@pytest.fixture
def big_tables(tenant_a, tenant_b):
    rng = random.Random(6)
    return build_table(tenant_a, rng, 2000) + build_table(tenant_b, rng, 600)


@pytest.fixture
def compiled(db):
    table = CompiledRouteTable(background=False, poll_interval=0)
    table.refresh()
    return table


def test_compiled_table_gives_the_same_decisions_as_the_database(big_tables):
    compiled = CompiledRouteTable(background=False)
    compiled.refresh()
    assert compiled.ready()
    database = DatabaseRouteTable()
    calls = random_calls(random.Random(7), big_tables, 1000)
    outcomes, rules = set(), set()
    for call in calls:
        expected = resolve(call, table=database)
        got = resolve(call, table=compiled)
        assert same(got, expected), call
        outcomes.add(expected.outcome)
        for line in expected.trace:
            rules_seen = ("does not start with", "does not match", ": outside", "no longer valid")
            for rule in (*rules_seen, "schedule "):
                if rule in line:
                    rules.add(rule)
        if expected.matched is not None:
            rules.add(("caller", bool(expected.matched.caller_prefix)))
            rules.add(("pattern", bool(expected.matched.caller_pattern)))
            rules.add(("scheduled", expected.matched.schedule_id is not None))
    # The generated table exercises every outcome and every rule, so the comparison
    # means something.
    assert {"routed", "rejected", "location", "no_route", "forbidden", "invalid"} <= outcomes
    assert {
        "does not start with",
        "does not match",
        ": outside",
        "no longer valid",
        "schedule ",
        ("caller", True),
        ("pattern", True),
        ("scheduled", True),
        ("scheduled", False),
    } <= rules


def test_tenants_never_see_each_others_prefixes(tenant_a, tenant_b, trunks_a, compiled):
    make_route(tenant_a, "4420", trunks_a[0])
    compiled.refresh()
    from_b = resolve(CallRequest(callee="+442012345", source_ip="198.51.100.9"), table=compiled)
    from_a = resolve(CallRequest(callee="+442012345", source_ip="192.0.2.9"), table=compiled)
    assert from_a.outcome == "routed"
    assert from_b.outcome == "no_route"
    assert from_b.tenant.slug == "tenant-b"


def test_a_decision_costs_no_query_whatever_the_table_size(tenant_a, tenant_b):
    rng = random.Random(1)
    calls = [CallRequest(callee=f"+33{n:07d}", source_ip="192.0.2.7") for n in range(50)]
    counts = []
    for size in (50, 2000):
        build_table(tenant_a, rng, size) if size == 50 else build_table(tenant_b, rng, size)
        table = CompiledRouteTable(background=False, poll_interval=3600)
        table.refresh()
        table._next_check = float("inf")  # no poll due during the measurement
        with CaptureQueriesContext(connection) as queries:
            for call in calls:
                resolve(call, table=table)
                resolve(dataclasses.replace(call, source_ip="198.51.100.7"), table=table)
        counts.append(len(queries))
    assert counts == [0, 0]


def test_a_due_poll_costs_one_primary_key_read_when_nothing_changed(route_a, compiled):
    call = CallRequest(callee="+33123456", source_ip="192.0.2.7")
    with CaptureQueriesContext(connection) as queries:
        assert resolve(call, table=compiled).outcome == "routed"
    assert [q["sql"] for q in queries] == [
        "SELECT version FROM routing_routetableversion WHERE id = 1"
    ]


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_a_plan_being_built_is_answered_from_the_database(route_a, background):
    table = CompiledRouteTable(background=background, poll_interval=3600)
    table.refresh()
    table.wait_ready(10)
    with table._lock:
        table._tables.pop(route_a.plan_id)
        table._building[route_a.plan_id] = set()  # as while a build runs
    DialPrefix.objects.filter(pk=route_a.pk).update(reject_code=486, action="reject")
    call = CallRequest(callee="+33123456", source_ip="192.0.2.7")
    with CaptureQueriesContext(connection) as queries:
        decision = resolve(call, table=table)
    assert decision.outcome == "rejected"
    assert decision.code == 486
    assert len(queries) >= 1  # read from the database, current


def test_long_prefixes_beyond_packed_keys_match(tenant_a, trunks_a, compiled):
    long_prefix = "3361234567890123456789"
    make_route(tenant_a, long_prefix, trunks_a[1])
    make_route(tenant_a, "336", trunks_a[0])
    compiled.refresh()
    decision = resolve(
        CallRequest(callee=long_prefix + "12", source_ip="192.0.2.7"), table=compiled
    )
    assert decision.matched.prefix == long_prefix
    assert decision.routes[0].trunk == "a-backup"


def test_the_packed_table_sorts_rows_that_arrive_out_of_order():
    table = PrefixTable()
    for n, prefix in enumerate(["44", "1", "33", "441"]):
        row = RouteRow(id=n, prefix=prefix)
        table.append((*(getattr(row, name) for name in names(RouteRow)), "", ""))
    table.finish()
    assert [table.lookup(p)[0][0].id for p in ["1", "33", "44", "441"]] == [1, 2, 0, 3]
    assert table.lookup("4") == ()


# --- Changes made in this process reach the compiled copy at the next poll ---------------


def decide(table, callee="+33123456", source_ip="192.0.2.7") -> Decision:
    return resolve(CallRequest(callee=callee, source_ip=source_ip, call_id="c"), table=table)


def test_a_changed_prefix_is_used_after_the_next_poll(route_a, compiled):
    assert decide(compiled).outcome == "routed"
    route_a.action, route_a.reject_code = "reject", 403
    route_a.save()
    assert decide(compiled).outcome == "rejected"


def test_a_renamed_prefix_stops_matching_under_its_old_digits(route_a, compiled):
    route_a.prefix = "34"
    route_a.save()
    assert decide(compiled).outcome == "no_route"
    assert decide(compiled, callee="+34611").outcome == "routed"


def test_a_deleted_target_and_prefix_disappear(route_a, compiled):
    route_a.targets.order_by("priority").first().delete()
    assert [r.trunk for r in decide(compiled).routes] == ["a-backup"]
    route_a.delete()
    assert decide(compiled).outcome == "no_route"


def test_bulk_updates_of_trunks_and_carriers_are_seen(route_a, trunks_a, compiled):
    # queryset.update() sends no signal: the triggers record it anyway.
    Trunk.objects.filter(pk=trunks_a[0].pk).update(is_active=False)
    assert [r.trunk for r in decide(compiled).routes] == ["a-backup"]
    Carrier.objects.filter(tenant=route_a.tenant).update(is_active=False)
    assert decide(compiled).code == 503
    Trunk.objects.filter(pk=trunks_a[1].pk).update(host="new.example.net")
    Carrier.objects.filter(tenant=route_a.tenant).update(is_active=True)
    assert "new.example.net" in decide(compiled).routes[0].uri


def test_tenant_and_source_changes_are_seen(route_a, compiled):
    Tenant.objects.filter(pk=route_a.tenant_id).update(is_active=False)
    assert decide(compiled).code == 403
    Tenant.objects.filter(pk=route_a.tenant_id).update(is_active=True)
    TenantSource.objects.create(tenant=route_a.tenant, network="203.0.113.0/24")
    assert decide(compiled, source_ip="203.0.113.5").outcome == "routed"
    TenantSource.objects.filter(network="192.0.2.0/24").delete()
    assert decide(compiled).code == 403


def test_a_new_tenant_gets_a_table(compiled, db):
    tenant = make_tenant("late", "203.0.113.0/24")
    make_route(tenant, "1", make_trunk(tenant, "late-trunk"))
    assert decide(compiled, callee="+1555", source_ip="203.0.113.1").outcome == "routed"


def test_a_table_change_rebuilds_the_plan(route_a, compiled):
    with changes.transaction.atomic(), changes.bulk_writes():
        DialPrefix.objects.filter(pk=route_a.pk).update(prefix="49")
        changes.record_change(changes.TABLE, tenant_id=route_a.tenant_id, key=str(route_a.plan_id))
    assert decide(compiled, callee="+4930").outcome == "routed"
    assert decide(compiled).outcome == "no_route"


def test_the_version_going_back_reloads_everything(route_a, compiled):
    compiled.version += 1000  # as after restoring an older database dump
    route_a.delete()
    assert decide(compiled).outcome == "no_route"


def test_the_setting_selects_one_compiled_table_per_process(settings, db):
    settings.ROUTING_TABLE = "compiled"
    assert get_route_table() is get_route_table() is compiled_route_table()
    settings.ROUTING_TABLE = "database"
    assert isinstance(get_route_table(), DatabaseRouteTable)
