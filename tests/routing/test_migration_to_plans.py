"""Migration 0007 (plans and customers) keeps every decision of the data it migrates.

The data is written at migration 0006, through the historical models: the demo's
tables as they were before plans, and a generated table. Decisions are taken before
(by the resolver over the old schema: the tenant's one table) and after (the real
database route table: the default customer, its plan "Default"), and compared.
"""

from __future__ import annotations

import random

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from routing.demo import DEMO
from routing.resolver import CallRequest, resolve
from routing.rows import CustomerRow, RouteRow, TargetLink, TargetRow, TrunkRow, builder
from routing.rows import select_sql as columns_of
from routing.tables import DatabaseRouteTable

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("routing", "0006_trunk_from_uri_validation")]
# A trunk's columns at 0006: those added since read as their defaults.
OLD_TRUNK = (
    columns_of(TrunkRow, "tr")
    .replace("tr.failover_codes", "''")
    .replace("tr.max_calls", "NULL")
    .replace("tr.max_cps", "NULL")
    # No number translation before 0012: the defaults.
    .replace("tr.number_format", "''")
    .replace("tr.country_code", "''")
    .replace("tr.national_prefix", "'0'")
    .replace("tr.international_prefix", "'00'")
    .replace("tr.outbound_callee_rules", "''")
    .replace("tr.outbound_caller_rules", "''")
    # No health rows before 0011: every trunk healthy, automatic.
    .replace("th.state", "''")
    .replace("th.since", "NULL")
    .replace("th.until", "NULL")
    .replace("th.reason", "''")
    .replace("th.override", "''")
)
# No target schedules before 0012.
OLD_TARGET = columns_of(TargetLink, "t").replace("t.schedule_id", "NULL")
# A route's columns at 0006 (the later ones take their defaults).
OLD_ROUTE = (
    "id",
    "prefix",
    "action",
    "routing_mode",
    "min_length",
    "max_length",
    "reject_code",
    "reject_reason",
    "description",
    "is_active",
)


class TableBeforePlans(DatabaseRouteTable):
    """The old schema read as a route table: one table per tenant, every call its own."""

    def schedules(self, tenant_id, ids):
        return {}  # no schedules before 0012

    def customers(self, tenant_id, *, address, callee, account):
        return [
            CustomerRow(
                id=tenant_id,
                tenant_id=tenant_id,
                name="Default",
                is_default=True,
                plan_id=tenant_id,
                plan_name="Default",
            )
        ]

    def routes(self, plan_id, candidates, version):  # plan_id is the tenant's id here
        link, trunk = builder(TargetLink), builder(TrunkRow)
        marks = ", ".join(["%s"] * len(candidates))
        found = []
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {', '.join(OLD_ROUTE)} "  # noqa: S608
                f"FROM routing_dialprefix WHERE tenant_id = %s AND prefix IN ({marks})",
                [plan_id, *candidates],
            )
            rows = [
                RouteRow(
                    **{**dict(zip(OLD_ROUTE, values, strict=True)), "is_active": bool(values[-1])}
                )
                for values in cursor.fetchall()
            ]
            for row in rows:
                cursor.execute(
                    f"SELECT {OLD_TARGET}, {OLD_TRUNK} "  # noqa: S608
                    "FROM routing_routetarget t JOIN routing_trunk tr ON tr.id = t.trunk_id "
                    "JOIN routing_carrier c ON c.id = tr.carrier_id WHERE t.prefix_id = %s",
                    [row.id],
                )
                width = 5
                targets = tuple(
                    TargetRow.of(link(v[:width]), trunk(v[width:])) for v in cursor.fetchall()
                )
                found.append((row, targets))
        return found


def old_rows(apps) -> None:
    """The demo as it was before plans (each tenant's first plan), and a generated table."""
    Tenant = apps.get_model("tenants", "Tenant")
    TenantSource = apps.get_model("tenants", "TenantSource")
    Carrier = apps.get_model("routing", "Carrier")
    Trunk = apps.get_model("routing", "Trunk")
    DialPrefix = apps.get_model("routing", "DialPrefix")
    RouteTarget = apps.get_model("routing", "RouteTarget")
    rng = random.Random(12)
    for slug, spec in DEMO.items():
        tenant = Tenant.objects.create(slug=slug, name=spec["name"])
        for network in spec["sources"]:
            TenantSource.objects.create(tenant=tenant, network=network)
        trunks = {}
        for carrier_name, trunk_specs in spec["carriers"].items():
            carrier = Carrier.objects.create(tenant=tenant, name=carrier_name)
            for fields in trunk_specs:
                fields = dict(fields)
                trunks[fields["name"]] = Trunk.objects.create(carrier=carrier, **fields)
        routes = next(iter(spec["plans"].values()))
        generated = {
            rng.choice(["33", "44", "49", "1"]) + "".join(rng.choices("0123456789", k=4))
            for _ in range(150)
        } - {prefix for prefix, *_ in routes}
        for prefix, description, action, mode, targets in [
            *routes,
            *((p, "generated", "route", "serial", rng.sample(
                [(name, rng.randint(1, 2), rng.choice([30, 70])) for name in trunks], 2
            )) for p in sorted(generated)),
        ]:  # fmt: skip
            row = DialPrefix.objects.create(
                tenant=tenant,
                prefix=prefix,
                description=description,
                action=action,
                routing_mode=mode,
                reject_code=403 if action == "reject" else None,
                min_length=4 if action == "location" else None,
                max_length=4 if action == "location" else None,
            )
            for name, priority, weight in targets:
                RouteTarget.objects.create(
                    prefix=row, trunk=trunks[name], priority=priority, weight=weight
                )


def calls() -> list[CallRequest]:
    rng = random.Random(3)
    sources = ["192.0.2.7", "198.51.100.9", "2001:db8:c::1", "127.0.0.1", "203.0.113.9"]
    return [
        CallRequest(
            callee=rng.choice(["+", ""]) + rng.choice(["33", "44", "49", "1", "2", "882", "7"])
            + "".join(rng.choices("0123456789", k=rng.randint(2, 9))),
            caller="100",
            source_ip=rng.choice(sources),
            source_port=5060,
            call_id=f"c{n}",
        )
        for n in range(600)
    ]  # fmt: skip


def summary(decision) -> tuple:
    return (
        decision.outcome,
        decision.code,
        decision.tenant.slug if decision.tenant else None,
        decision.matched.id if decision.matched else None,
        tuple((route.trunk_id, route.uri) for route in decision.routes),
    )


def test_every_decision_is_the_same_after_the_migration_to_plans():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(BEFORE)
        executor.loader.build_graph()
        old_rows(executor.loader.project_state(BEFORE).apps)
        before = [summary(resolve(call, table=TableBeforePlans())) for call in calls()]

        executor = MigrationExecutor(connection)
        executor.migrate(latest)
        after = [summary(resolve(call, table=DatabaseRouteTable())) for call in calls()]
    finally:
        MigrationExecutor(connection).migrate(
            MigrationExecutor(connection).loader.graph.leaf_nodes()
        )

    assert {outcome for outcome, *_ in before} >= {"routed", "rejected", "location", "forbidden"}
    assert after == before
