"""Least-cost routing at scale: 20 vendors x 100,000-prefix decks beside 1,000,000 routes.

    python -m bench.lcr_bench [--calls 50000] [--profile]    # after `python -m bench.setup`

The goal it measures: "20 vendors with 100,000-prefix decks each plus 1,000,000
routes: a decision with `lcr` stays under 0.3 ms p50 in the resolver bench, memory
per process under 300 MB; a new deck of 100,000 rows is live in every process within
5 s of its import committing."

On BENCH_DATABASE_URL (the bench.setup table; this WRITES to it, use a copy):

1. setup, once (skipped when the decks are there): for 20 carriers of `wholesale-eu`
   a 100,000-prefix vendor deck in EUR (the country codes of the route table, a
   sample of the tenant's route prefixes and random extensions of them; rates
   0.001-0.2, each vendor within ~+-30% of a per-destination base); a EUR sell deck
   (base x 1.3, the plans' prefixes cut to country code + 2 digits) for the tenant's
   10 biggest plans, with margin_percent 10 on them; 30% of those plans' `route`
   routes switched to `lcr` with 3-6 targets on trunks of distinct vendors (their
   old targets replaced), 0.2% to `lcr_all`. Set-based SQL (COPY for the targets)
   in one transaction, change triggers off and one change recorded per plan;
2. one process, ROUTING_TABLE=compiled: load time and RSS of the compiled route
   table, then of the compiled rate store (`rating.lookup.rate_store()`, every
   deck); then customers' calls (bench.resolver_bench's generator, those of the 10
   plans, numbers under an lcr route or, the control set, under a fixed route of
   the plan) resolved one by one with `resolve(request, table=compiled,
   rates=rating.lookup.rate_source())`: p50/p99 by the strategy of the route that
   decided; then the compiled table + rate store and the database table + database
   rate source compared on 2,000 lcr calls (whole decision);
3. a second process warms its own compiled rate store and polls `rate_for()` for a
   number whose rate only the new deck changes; this process imports that new
   100,000-row deck (effective now): seconds from the commit until the other process
   answers from the new deck, and until it answers from memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from bench.common import DATA, machine, memory_mb, percentile, server_env, setup_django, summary
from bench.generate import COUNTRIES, MOBILE_LEADS

TENANT = "wholesale-eu"
VENDORS = 20
DECK = 100_000
PLANS = 10
LCR_SHARE = 0.30
LCR_ALL_SHARE = 0.002
MARGIN_PERCENT = 10
SELL_MARKUP = 1.3
HEADER = "prefix,description,rate,connect_fee,initial_increment,next_increment\n"
CODES = sorted((code for code, _ in COUNTRIES), key=len, reverse=True)
LCR_DIR = DATA / "lcr"


# --- Decks ----------------------------------------------------------------------------


def country(prefix: str) -> str:
    for code in CODES:
        if prefix.startswith(code):
            return code
    return prefix[:2]


def base_rate(prefix: str) -> float:
    """A destination's going rate: per country, mobile ranges dearer (deterministic)."""
    code = country(prefix)
    rate = random.Random(f"base-{code}").uniform(0.003, 0.09)
    lead = prefix[len(code) : len(code) + 1]
    return rate * (1.7 if lead and lead in MOBILE_LEADS else 1.0)


def money(value: float, low: float, high: float) -> str:
    return f"{min(max(value, low), high):.6f}".rstrip("0").rstrip(".")


def vendor_prefixes(route_prefixes: list[str], count: int, seed: int) -> list[str]:
    """`count` distinct prefixes: every country code, 70% the tenant's route prefixes,
    the rest one or two random digits longer than a route prefix."""
    rng = random.Random(seed)
    found = {code for code, _ in COUNTRIES}
    found.update(rng.sample(route_prefixes, min(len(route_prefixes), int(count * 0.7))))
    while len(found) < count:
        found.add(rng.choice(route_prefixes) + str(rng.randrange(10 ** rng.randint(1, 2))))
    return sorted(found)[:count] if len(found) > count else sorted(found)


def write_vendor_deck(
    path: Path, route_prefixes: list[str], seed: int, changed: dict[str, str] | None = None
) -> Path:
    """A vendor's deck (deterministic for a seed); `changed` overrides some rates."""
    rng = random.Random(seed + 1)
    factor = random.Random(f"vendor-{seed}").uniform(0.9, 1.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for prefix in vendor_prefixes(route_prefixes, DECK, seed):
            rate = money(base_rate(prefix) * factor * rng.uniform(0.75, 1.35), 0.001, 0.2)
            if changed and prefix in changed:
                rate = changed[prefix]
            fee = rng.choice(("0", "0", "0", "0.01"))
            initial, following = rng.choice(((60, 60), (30, 6), (1, 1), (60, 1)))
            out.write(f"{prefix},Destination {prefix[:4]},{rate},{fee},{initial},{following}\n")
    return path


def write_sell_deck(path: Path, plan_prefixes: list[str]) -> Path:
    """A plan's sell deck: its prefixes cut to country code + 2 digits, base x 1.3."""
    found = {code for code, _ in COUNTRIES}
    found.update(p[: len(country(p)) + 2] for p in plan_prefixes if p)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for prefix in sorted(found):
            rate = money(base_rate(prefix) * SELL_MARKUP, 0.001, 0.3)
            out.write(f"{prefix},Sell {prefix[:4]},{rate},0,60,60\n")
    return path


def import_file(owner, path: Path, effective):
    from rating.importing import import_deck
    from routing.models import Carrier

    field = "carrier" if isinstance(owner, Carrier) else "plan"
    return import_deck(
        lambda: path.open(encoding="utf-8", newline=""),
        **{field: owner},
        effective_from=effective,
        currency="EUR",
        name=path.name,
    )


# --- Setup ------------------------------------------------------------------------------


def vendors() -> list:
    from routing.models import Carrier

    return list(Carrier.objects.filter(tenant__slug=TENANT).order_by("id")[:VENDORS])


def biggest_plans() -> list:
    from django.db.models import Count

    from routing.models import RoutingPlan

    return list(
        RoutingPlan.objects.filter(tenant__slug=TENANT)
        .annotate(n=Count("prefixes"))
        .order_by("-n", "id")[:PLANS]
    )


def tenant_route_prefixes() -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT prefix FROM routing_dialprefix p JOIN tenants_tenant t "
            "ON t.id = p.tenant_id WHERE t.slug = %s AND prefix <> '' ORDER BY prefix",
            [TENANT],
        )
        return [row[0] for row in cursor.fetchall()]


def import_decks(carriers: list, plans: list) -> None:
    from datetime import timedelta

    from django.utils import timezone

    route_prefixes = tenant_route_prefixes()
    effective = timezone.now() - timedelta(days=1)
    print(f"setup: {len(route_prefixes):,} distinct route prefixes in {TENANT}")
    for i, carrier in enumerate(carriers):
        path = write_vendor_deck(LCR_DIR / f"vendor{i:02d}.csv", route_prefixes, seed=100 + i)
        t = time.monotonic()
        result = import_file(carrier, path, effective)
        print(f"  {carrier.name}: {result.rows:,} rates imported in {time.monotonic() - t:.1f} s")
    for plan in plans:
        plan_prefixes = list(plan.prefixes.values_list("prefix", flat=True))
        path = write_sell_deck(LCR_DIR / f"sell-plan{plan.pk}.csv", plan_prefixes)
        result = import_file(plan, path, effective)
        print(f"  sell deck of {plan.name} ({plan.n:,} routes): {result.rows:,} rates")


def setup() -> None:
    from django.db import connection, transaction

    from rating.models import RateDeck
    from routing import changes
    from routing.models import DialPrefix, Trunk

    carriers = vendors()
    plans = biggest_plans()
    started = time.monotonic()
    if RateDeck.objects.filter(carrier=carriers[0]).exists():
        print("setup: decks already there")
    else:
        import_decks(carriers, plans)
    if DialPrefix.objects.filter(plan__in=plans).exclude(strategy="fixed").exists():
        print("setup: lcr routes already there")
        return

    rng = random.Random(42)
    trunks: dict[int, list[int]] = {}
    for trunk_id, carrier_id in Trunk.objects.filter(carrier__in=carriers).values_list(
        "id", "carrier_id"
    ):
        trunks.setdefault(carrier_id, []).append(trunk_id)
    carrier_ids = sorted(trunks)
    plan_ids = [plan.pk for plan in plans]
    with transaction.atomic(), changes.bulk_writes(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE routing_routingplan SET margin_percent = %s WHERE id = ANY(%s)",
            [MARGIN_PERCENT, plan_ids],
        )
        cursor.execute(
            "SELECT id FROM routing_dialprefix WHERE plan_id = ANY(%s) AND action = 'route' "
            "AND is_active ORDER BY id",
            [plan_ids],
        )
        ids = [row[0] for row in cursor.fetchall()]
        lcr, lcr_all = [], []
        for pk in ids:
            draw = rng.random()
            if draw < LCR_ALL_SHARE:
                lcr_all.append(pk)
            elif draw < LCR_ALL_SHARE + LCR_SHARE:
                lcr.append(pk)
        cursor.execute("UPDATE routing_dialprefix SET strategy = 'lcr' WHERE id = ANY(%s)", [lcr])
        cursor.execute(
            "UPDATE routing_dialprefix SET strategy = 'lcr_all' WHERE id = ANY(%s)", [lcr_all]
        )
        cursor.execute("DELETE FROM routing_routetarget WHERE prefix_id = ANY(%s)", [lcr])
        count = 0
        with cursor.cursor.copy(
            "COPY routing_routetarget (prefix_id, trunk_id, priority, weight) FROM STDIN"
        ) as copy:
            for pk in lcr:
                for carrier_id in rng.sample(carrier_ids, rng.randint(3, 6)):
                    copy.write_row((pk, rng.choice(trunks[carrier_id]), 1, 100))
                    count += 1
        for plan in plans:
            changes.record_change("plan", tenant_id=plan.tenant_id, key=str(plan.pk))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_dialprefix")
        cursor.execute("ANALYZE routing_routetarget")
        cursor.execute("ANALYZE rating_rate")
        cursor.execute("ANALYZE rating_ratedeck")
    print(
        f"setup: {len(ids):,} route routes in the {len(plans)} plans: {len(lcr):,} now lcr "
        f"({count:,} targets on {len(carrier_ids)} vendors), {len(lcr_all):,} lcr_all; "
        f"{time.monotonic() - started:.0f} s in all"
    )


# --- Calls ------------------------------------------------------------------------------


def plan_routes(plan_ids: list[int]) -> dict[tuple[int, str], list[str]]:
    """The active `route` routes' prefixes of the plans, by (plan id, strategy)."""
    from routing.models import DialPrefix

    found: dict[tuple[int, str], list[str]] = {}
    rows = DialPrefix.objects.filter(
        plan_id__in=plan_ids, action="route", is_active=True
    ).values_list("plan_id", "strategy", "prefix")
    for plan_id, strategy, prefix in rows.order_by("id"):
        found.setdefault((plan_id, strategy), []).append(prefix)
    return found


def base_calls(plans: list, count: int) -> list:
    """Customers' calls (resolver_bench's generator) of the plans: (request, plan id)."""
    from bench.resolver_bench import customer_calls

    by_name = {plan.name: plan.pk for plan in plans}
    return [
        (call.request, by_name[call.plan], call.customer)
        for call in customer_calls(count, seed=11)
        # the generator's calls of wholesale-eu come from its /16
        if call.plan in by_name and (call.request.source_ip or "").startswith("10.1.")
    ]


def calls_to(base: list, strategy: str, count: int, seed: int) -> list:
    """`count` of the calls, each with a number under a random `strategy` route of its plan."""
    from routing.models import Customer

    tech = dict(Customer.objects.filter(tenant__slug=TENANT).values_list("name", "tech_prefix"))
    routes = plan_routes(sorted({plan_id for _, plan_id, _ in base}))
    rng = random.Random(seed)
    found = []
    while len(found) < count:
        request, plan_id, customer = rng.choice(base)
        prefixes = routes.get((plan_id, strategy))
        if not prefixes:
            continue
        prefix = rng.choice(prefixes)
        digits = prefix + "".join(rng.choices("0123456789", k=max(1, 11 - len(prefix))))
        callee = tech[customer] + digits if tech[customer] else "+" + digits
        found.append(dataclasses.replace(request, callee=callee, call_id=f"lcr-{len(found)}"))
    return found


def timed(requests: list, table, rates, count: int):
    """Latencies by the strategy of the route that decided (None: no route matched)."""
    from routing.resolver import resolve

    by_strategy: dict[str | None, list[float]] = {}
    outcomes: Counter = Counter()
    clock = time.perf_counter
    started = clock()
    for n in range(count):
        before = clock()
        decision = resolve(requests[n % len(requests)], table=table, rates=rates)
        elapsed = clock() - before
        strategy = decision.matched.strategy if decision.matched else None
        by_strategy.setdefault(strategy, []).append(elapsed)
        outcomes[(strategy, decision.outcome.value, decision.reason)] += 1
    return by_strategy, clock() - started, outcomes


def report(label: str, by_strategy: dict, seconds: float, outcomes: Counter) -> None:
    everything = [x for values in by_strategy.values() for x in values]
    print(summary(label, everything, seconds))
    for strategy, values in sorted(by_strategy.items(), key=lambda kv: -len(kv[1])):
        ordered = sorted(values)
        print(
            f"  matched route {strategy}: {len(values):,} decisions, "
            f"p50 {percentile(ordered, 0.5) * 1000:.3f} ms, "
            f"p99 {percentile(ordered, 0.99) * 1000:.3f} ms"
        )
    total = sum(outcomes.values())
    print(
        "  outcomes: "
        + ", ".join(f"{s} {o} '{r}' {n / total:.1%}" for (s, o, r), n in outcomes.most_common(8))
    )


# --- A new deck, seen by another process -------------------------------------------------


def watch(carrier_id: int, number: str, new_rate: str) -> None:
    """Child process: poll rate_for() until it answers `new_rate`, from the database or memory."""
    setup_django()
    from django.utils import timezone

    from rating.lookup import RateStore

    store = RateStore()
    started = time.monotonic()
    store.wait_ready(600)
    print(f"ready {time.monotonic() - started:.1f} {memory_mb(os.getpid())[0]:.0f}", flush=True)
    wanted = Decimal(new_rate)
    seen = False
    while True:
        match = store.rate_for(carrier_id, number, timezone.now())
        if match is not None and match.rate == wanted:
            if not seen:
                print(f"seen {time.time()}", flush=True)
                seen = True
            if store.is_built(carrier_id):
                print(f"compiled {time.time()}", flush=True)
                return
        time.sleep(0.002)


def new_deck_live(store) -> None:
    from django.utils import timezone

    carrier = vendors()[0]
    route_prefixes = tenant_route_prefixes()
    # A number under a prefix of the deck; the new deck changes that prefix's rate only.
    prefixes = vendor_prefixes(route_prefixes, DECK, seed=100)
    number = prefixes[len(prefixes) // 2] + "000"
    current = store.rate_for(carrier.pk, number, timezone.now())
    new_rate = format(current.rate + Decimal("0.000123"), "f")
    print(
        f"new deck: {carrier.name}, number {number} (prefix {current.prefix}) now "
        f"{current.rate}, the new deck says {new_rate}"
    )
    write_vendor_deck(LCR_DIR / "vendor00-new.csv", route_prefixes, 100, {current.prefix: new_rate})
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.lcr_bench", "--watch", str(carrier.pk), number, new_rate],
        env=server_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _, warm, rss = child.stdout.readline().split()
        print(f"watcher: its rate store warmed in {warm} s, RSS {rss} MB")
        result = import_file(carrier, LCR_DIR / "vendor00-new.csv", timezone.now())
        committed = time.time()
        print(f"new deck of {result.rows:,} rows imported in {result.seconds:.1f} s")
        here = None
        while here is None and time.time() - committed < 30:
            match = store.rate_for(carrier.pk, number, timezone.now())
            if match is not None and match.rate == Decimal(new_rate):
                here = time.time()
            time.sleep(0.002)
        seen = float(child.stdout.readline().split()[1])
        compiled = float(child.stdout.readline().split()[1])
        print(
            f"new {result.rows:,}-row deck: the other process answered from it "
            f"{seen - committed:.2f} s after commit (from the database while building), "
            f"from memory after {compiled - committed:.2f} s; this process after "
            f"{(here or float('nan')) - committed:.2f} s"
        )
    finally:
        child.kill()
        child.wait()


def table_memory(compiled) -> str:
    """Where the compiled table's memory goes; the plans share one pool (each counted once)."""
    from bench.resolver_bench import _deep

    tables = list(compiled._tables.values())
    arrays = sum(
        sys.getsizeof(getattr(t, name))
        for t in tables
        for name in ("keys", "ids", "shape", "text", "target_start", "profile", "target_ids")
    )
    filters = sum(len(t.filter1) + len(t.filter2) for t in tables)
    pools = list({id(t.pools): t.pools for t in tables}.values())
    seen: set[int] = set()
    profiles = sum(_deep(pool.profiles, seen) for pool in pools)
    texts = sum(_deep(pool.texts, seen) for pool in pools)
    # The pools' index: its keys hold each profile's text as read from the database.
    index = sum(
        sys.getsizeof(pool.index) + sum(_deep(k, seen) for k in pool.index) for pool in pools
    )
    return (
        f"compiled table by part: arrays {arrays / 2**20:.1f} MB, filters "
        f"{filters / 2**20:.1f} MB, target profiles {profiles / 2**20:.1f} MB "
        f"({sum(len(pool.profiles) for pool in pools):,} in {len(pools)} pool(s)), "
        f"descriptions {texts / 2**20:.1f} MB, the pools' index {index / 2**20:.1f} MB"
    )


# --- Main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true", help="cProfile 20,000 lcr decisions.")
    parser.add_argument("--skip-live", action="store_true", help="No new-deck measure.")
    args = parser.parse_args()
    print(machine())
    setup_django()
    from django.db import connection

    from rating.lookup import database_rate_source, rate_source, rate_store
    from routing.compiled import CompiledRouteTable
    from routing.resolver import resolve
    from routing.tables import DatabaseRouteTable

    setup()
    connection.close()

    baseline = memory_mb(os.getpid())[0]
    started = time.monotonic()
    compiled = CompiledRouteTable(background=False)
    compiled.refresh()
    table_rss = memory_mb(os.getpid())[0]
    print(
        f"compiled route table: {len(compiled._tables)} plans loaded in "
        f"{time.monotonic() - started:.1f} s, RSS {baseline:.0f} -> {table_rss:.0f} MB "
        f"(+{table_rss - baseline:.0f} MB)"
    )
    print(table_memory(compiled))
    started = time.monotonic()
    store = rate_store()
    store.wait_ready(600)
    rates_rss, peak = memory_mb(os.getpid())
    owners = store.built_owners()
    count = sum(len(d) for o in owners.values() for d in o.packed.values())
    kinds = Counter(kind for kind, _ in owners)
    print(
        f"rate store: {store.packed_decks()} decks ({dict(kinds)}), {count:,} rates in "
        f"{time.monotonic() - started:.1f} s, RSS {table_rss:.0f} -> {rates_rss:.0f} MB "
        f"(+{rates_rss - table_rss:.0f} MB); process {rates_rss:.0f} MB, peak {peak:.0f} MB, "
        f"+{rates_rss - baseline:.0f} MB for both"
    )

    plans = biggest_plans()  # after the memory figures: the calls are the bench's own
    started = time.monotonic()
    base = base_calls(plans, 100_000)
    lcr = calls_to(base, "lcr", 20_000, seed=7)
    fixed = calls_to(base, "fixed", 20_000, seed=8)
    lcr_all = calls_to(base, "lcr_all", 2_000, seed=9)
    rules = Counter(request.account != "" for request, _, _ in base)
    print(
        f"calls made in {time.monotonic() - started:.1f} s: {len(base):,} customers' calls "
        f"of the {len(plans)} plans ({rules[True]:,} with an account), "
        "20,000 to lcr routes, 20,000 to fixed routes, 2,000 to lcr_all routes"
    )

    rates = rate_source()
    compiled._next_check = float("inf")  # decisions, not the 0.2 s polls
    store._next_check = float("inf")
    timed(lcr, compiled, rates, 2000)  # warm up
    report("lcr calls", *timed(lcr, compiled, rates, args.calls))
    timed(fixed, compiled, rates, 2000)
    report("fixed calls (control)", *timed(fixed, compiled, rates, args.calls))
    report("lcr_all calls", *timed(lcr_all, compiled, rates, 5_000))

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        timed(lcr, compiled, rates, 20_000)
        profiler.disable()
        print("cProfile of 20,000 lcr decisions")
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
        profiler = cProfile.Profile()
        profiler.enable()
        timed(lcr_all, compiled, rates, 2_000)
        profiler.disable()
        print("cProfile of 2,000 lcr_all decisions")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

    database, database_rates = DatabaseRouteTable(), database_rate_source()
    report("lcr calls, database table + rate source", *timed(lcr, database, database_rates, 2000))
    differ = 0
    examples = []
    statuses: Counter = Counter()
    for request in lcr[:2000]:
        mine = resolve(request, table=compiled, rates=rates)
        statuses.update(line.status for line in mine.costs)
        theirs = resolve(request, table=database, rates=database_rates)
        if dataclasses.replace(mine, decision_id="") != dataclasses.replace(theirs, decision_id=""):
            differ += 1
            examples.append((request.callee, mine.trace, theirs.trace))
    print(f"decisions that differ between compiled and database on 2,000 lcr calls: {differ}")
    for example in examples[:3]:
        print("  ", example)
    print(
        "their candidates: "
        + ", ".join(f"{status} {n / 2000:.2f}" for status, n in statuses.most_common())
        + " per call (first: cheapest; skipped: no rate or above the margin guard)"
    )
    store._next_check = 0.0

    if not args.skip_live:
        new_deck_live(store)
    print(machine())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--watch":
        watch(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        main()
