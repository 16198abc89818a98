"""The admin's number box on a large route table: one lookup's time and queries.

    python -m bench.numberbox_bench                       # 1,000,000 prefixes
    python -m bench.numberbox_bench --prefixes 200000     # a smaller table
    python -m bench.numberbox_bench --lookups 500 --staged

Uses a database of its own (BENCH_DATABASE_URL's server, database
routing_bench_numberbox; created, migrated, filled once per size and reused): one
tenant with one plan of N prefixes (8-9 digits under 72 two-digit "country codes",
plus the codes themselves and a 4-digit level under each, so a number's chain has
three links), each with two targets (70/30 on two trunks) and, on one route in ten,
a third at priority 2 on an unhealthy trunk. The rows are written with COPY from one
template row per model (every column as Django would save it), not through the
import: the point is the lookup, not the load.

Then, as the tenant's operator, `--lookups` numbers under random prefixes (10% under
no prefix): ops.numberbox.lookup() alone, and the whole page (the view with its form,
template and admin context, without the HTTP server), timed one by one; the number of
SQL queries of one lookup is printed at this size, to compare with the tests' (which
check it does not grow with the table). `--staged` publishes the plan first, so
lookups read the published version (routing_publishedroute), as for a staged plan.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import database_url, machine, percentile, setup_django

DATABASE = "routing_bench_numberbox"
CODES = [f"{n}" for n in range(20, 100) if n % 10]  # 72 two-digit "country codes"
TENANT = "numberbox-bench"


def bench_url() -> str:
    base = database_url()
    return base.rsplit("/", 1)[0] + f"/{DATABASE}"


def create_database(url: str) -> None:
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
            print(f"created database {DATABASE}")


def prefixes(count: int) -> list[str]:
    """`count` distinct prefixes: the codes, a 4-digit level, then 7-8 digit ranges."""
    rng = random.Random(19)
    found = list(CODES)
    found += [f"{code}{n:02d}" for code in CODES for n in range(0, 100, 7)]
    seen = set(found)
    while len(found) < count:
        code = rng.choice(CODES)
        candidate = f"{code}{rng.randrange(0, 100):02d}{rng.randrange(0, 10**4):04d}"
        if rng.random() < 0.3:
            candidate += str(rng.randrange(10))
        if candidate not in seen:
            seen.add(candidate)
            found.append(candidate)
    return found[:count]


def copy_rows(model, template, rows: list[dict]) -> None:
    """COPY `rows` into `model`'s table: `template`'s column values, each row's overriding."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    base = {f.attname: f.get_db_prep_save(getattr(template, f.attname), connection) for f in fields}
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                values = {**base, **row}
                copy.write_row([values[f.attname] for f in fields])


def build(count: int) -> None:
    """The tenant, its operator, trunks and `count` prefixes (skipped when there)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from routing.deadline import lift_statement_timeout
    from routing.models import (
        Carrier,
        Customer,
        DialPrefix,
        RouteTarget,
        RoutingPlan,
        Trunk,
        TrunkHealth,
    )
    from tenants.models import Tenant, TenantSource, User
    from tenants.roles import operator_group

    tenant = Tenant.objects.filter(slug=TENANT).first()
    if tenant is not None and DialPrefix.objects.filter(tenant=tenant).count() == count:
        print(f"table of {count:,} prefixes already there")
        return
    started = time.perf_counter()
    with transaction.atomic():
        lift_statement_timeout()
        with connection.cursor() as cursor:
            # The change-log triggers skip bulk writes (as the importer's do): no process
            # holds this table yet, and a million log rows would only cost time.
            cursor.execute("SET LOCAL routing.bulk = 'on'")
        if tenant is not None:
            DialPrefix.objects.filter(tenant=tenant).delete()
        else:
            tenant = Tenant.objects.create(slug=TENANT, name="Number box bench")
            TenantSource.objects.create(tenant=tenant, network="10.99.0.0/16")
            plan = RoutingPlan.objects.create(tenant=tenant, name="Default")
            Customer.objects.create(tenant=tenant, name="Default", plan=plan, is_default=True)
            operator = User.objects.create_user(
                username="numberbox-operator", tenant=tenant, is_staff=True
            )
            operator.groups.add(operator_group())
            carrier = Carrier.objects.create(tenant=tenant, name="Bench carrier")
            for name in ("nb-a", "nb-b", "nb-down"):
                Trunk.objects.create(carrier=carrier, name=name, host=f"{name}.example.net")
        plan = RoutingPlan.objects.get(tenant=tenant, name="Default")
        trunks = {t.name: t for t in tenant.carriers.get().trunks.all()}
        TrunkHealth.objects.update_or_create(
            trunk=trunks["nb-down"], defaults={"state": "unhealthy", "since": timezone.now()}
        )
        copy_rows(
            DialPrefix,
            DialPrefix(tenant=tenant, plan=plan, prefix=""),
            ({"prefix": p, "description": f"range {p}"} for p in prefixes(count)),
        )
        with connection.cursor() as cursor:
            for trunk, priority, weight, where in (
                (trunks["nb-a"], 1, 70, ""),
                (trunks["nb-b"], 1, 30, ""),
                (trunks["nb-down"], 2, 100, "AND id %% 10 = 0"),
            ):
                cursor.execute(
                    "INSERT INTO routing_routetarget (prefix_id, trunk_id, priority, weight) "  # noqa: S608
                    f"SELECT id, %s, %s, %s FROM routing_dialprefix WHERE plan_id = %s {where}",
                    [trunk.pk, priority, weight, plan.pk],
                )
        assert RouteTarget.objects.filter(prefix__plan=plan).exists()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_dialprefix")
        cursor.execute("ANALYZE routing_routetarget")
    print(f"built {count:,} prefixes in {time.perf_counter() - started:.1f} s")


def numbers(count: int, known: list[str]) -> list[str]:
    rng = random.Random(7)
    found = []
    for _ in range(count):
        if rng.random() < 0.1:
            found.append(f"+1{rng.randrange(10**9, 10**10)}")  # under no prefix
            continue
        prefix = rng.choice(known)
        rest = "".join(str(rng.randrange(10)) for _ in range(max(0, 11 - len(prefix))))
        number = prefix + rest
        found.append(rng.choice([f"+{number}", f"00{number}", f"+{number[:2]} {number[2:]}"]))
    return found


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    print(
        f"{label}: {len(ordered)} lookups, p50 {percentile(ordered, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(ordered, 0.99) * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--staged", action="store_true", help="Publish the plan first.")
    args = parser.parse_args()

    import os

    url = bench_url()
    create_database(url)
    os.environ["BENCH_DATABASE_URL"] = url
    os.environ["ROUTING_TABLE"] = "database"  # what the admin's processes read
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(machine())
    build(args.prefixes)

    from django.contrib import admin
    from django.db import connection, reset_queries
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    from ops import admin_views
    from ops.numberbox import lookup
    from routing.models import DialPrefix, RoutingPlan
    from tenants.models import User
    from versions.publishing import publish

    user = User.objects.get(username="numberbox-operator")
    plan = RoutingPlan.objects.get(tenant=user.tenant, name="Default")
    if args.staged and plan.published_version is None:
        started = time.perf_counter()
        publish(plan, user=user, comment="number box bench")
        print(f"published version 1 in {time.perf_counter() - started:.1f} s")
    known = list(
        DialPrefix.objects.filter(plan=plan).order_by("?").values_list("prefix", flat=True)[:5000]
    )
    sample = numbers(args.lookups, known)
    for number in sample[:20]:  # warm: connection, imports, plans
        lookup(user=user, number=number)

    with CaptureQueriesContext(connection) as queries:
        found = lookup(user=user, number=sample[0])
    print(
        f"one lookup: {len(queries.captured_queries)} queries; {sample[0]} -> chain "
        f"{found.chain_text or '(none)'}, {found.decision.outcome}"
    )

    timings = []
    for number in sample:
        started = time.perf_counter()
        lookup(user=user, number=number)
        timings.append(time.perf_counter() - started)
    report(f"lookup() at {args.prefixes:,} prefixes", timings)

    factory = RequestFactory()
    timings = []
    for number in sample:
        request = factory.get("/admin/number/", {"n": number})
        request.user = user
        started = time.perf_counter()
        response = admin_views.number_box(request)
        response.render()
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
        reset_queries()
    report(f"whole page (view + template) at {args.prefixes:,} prefixes", timings)
    del admin  # imported for the admin site's registrations, used by the view


if __name__ == "__main__":
    main()
