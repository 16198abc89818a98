"""Resolver alone: decisions/s and p50/p99 on the benchmark table, compiled and database.

    python -m bench.resolver_bench [--calls 50000] [--db-calls 5000] [--profile]

One process: loads the compiled table (every plan and customer; time, RSS before and
after), then resolves random calls one at a time, timing each, with both tables,
and checks that both give the same decisions on 2,000 calls.

The calls are the customers' (bench.generate): a customer is picked at random and
the call comes as it would, from an address in one of its networks and its port, or
with its technical prefix before the number (`4711#4930...`), or with its account;
20% of the calls come from addresses of a tenant's /16 that no customer has (its
default customer takes them; all calls do on a `setup --flat` table). 90% of the
numbers are under a prefix of the plan the call should be routed by, 10% random.
Each call knows the customer it should be recognised as, and the bench counts the
decisions that say otherwise.

Customer recognition's share is measured two ways: the candidates' lookup and
`recognise_customer()` timed alone per call, and the same calls resolved with
their plan named (`CallRequest.plan`, as the simulator does), which skips
recognition.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import random
import sys
import time
from collections import Counter

from bench.common import machine, memory_mb, percentile, setup_django, summary

DEFAULT_SHARE = 0.2  # calls from addresses no customer has: the default customer's


@dataclasses.dataclass(frozen=True)
class BenchCall:
    request: object  # routing.resolver.CallRequest
    customer: str  # the name it should be recognised as
    plan: str  # the plan it should be routed by
    rule: str  # how it is recognised: network, port, tech, account, default


def _plan_prefixes(per_plan: int) -> dict[int, list[str]]:
    """A random sample of each plan's prefixes, by plan id."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT plan_id, prefix FROM (SELECT plan_id, prefix, row_number() OVER "
            "(PARTITION BY plan_id ORDER BY random()) AS n FROM routing_dialprefix) s "
            "WHERE n <= %s",
            [per_plan],
        )
        found: dict[int, list[str]] = {}
        for plan_id, prefix in cursor.fetchall():
            found.setdefault(plan_id, []).append(prefix)
    for prefixes in found.values():
        prefixes.sort()  # random() above is not seeded: sort, the rng picks
    return found


def customer_calls(count: int, seed: int = 6) -> list[BenchCall]:
    """`count` random calls of the benchmark tenants' customers (see the module doc)."""
    from django.db.models import Count

    from routing.models import Customer, DialPrefix
    from routing.resolver import CallRequest
    from tenants.models import TenantSource

    rng = random.Random(seed)
    from bench.generate import TENANTS

    # The generated tenants only: other benchmarks add tenants of their own.
    networks = {
        source.tenant_id: ipaddress.ip_network(source.network)
        for source in TenantSource.objects.filter(
            tenant__slug__in=[spec.slug for spec in TENANTS]
        ).order_by("id")
    }
    customers = list(
        Customer.objects.filter(tenant_id__in=networks)
        .select_related("plan")
        .prefetch_related("sources")
        .order_by("id")
    )
    prefixes = _plan_prefixes(200)
    # The /24s a customer's network touches; the default customer's calls avoid them.
    taken = {
        (customer.tenant_id, int(ipaddress.ip_network(s.network).network_address) >> 8)
        for customer in customers
        for s in customer.sources.all()
    }
    defaults = [c for c in customers if c.is_default]
    others = [c for c in customers if not c.is_default]
    # Unknown callers' calls per tenant follow its share of the table (55/30/12/3%).
    default_weight = dict(
        DialPrefix.objects.order_by().values_list("tenant_id").annotate(n=Count("id"))
    )

    def free_address(tenant_id: int) -> str:
        network = networks[tenant_id]
        while True:
            address = network[rng.randint(1, network.num_addresses - 2)]
            if (tenant_id, int(address) >> 8) not in taken:
                return str(address)

    def number(plan_id: int) -> str:
        if rng.random() < 0.1 or not prefixes.get(plan_id):
            return str(rng.randint(10**10, 10**12))
        prefix = rng.choice(prefixes[plan_id])
        return prefix + "".join(rng.choices("0123456789", k=max(0, 11 - len(prefix))))

    calls = []
    for n in range(count):
        if not others or rng.random() < DEFAULT_SHARE:
            customer = rng.choices(
                defaults, [default_weight.get(c.tenant_id, 0) for c in defaults]
            )[0]
        else:
            customer = rng.choice(others)
        sources = list(customer.sources.all())
        source, port, account = free_address(customer.tenant_id), 5060, ""
        callee = "+" + number(customer.plan_id)
        rule = "default" if customer.is_default else "network"
        if sources:
            chosen = rng.choice(sources)
            network = ipaddress.ip_network(chosen.network)
            source = str(network[rng.randrange(network.num_addresses)])
            port = chosen.port or rng.choice([5060, 5060, 5062, 5080])
            rule = "port" if chosen.port else rule
        if customer.tech_prefix:
            callee = customer.tech_prefix + callee.lstrip("+")
            rule = "tech"
        if customer.account:
            account, rule = customer.account, "account"
        calls.append(
            BenchCall(
                CallRequest(
                    callee=callee,
                    caller="+4930" + str(rng.randint(10**6, 10**7)),
                    source_ip=source,
                    source_port=port,
                    account=account,
                    call_id=f"bench-{n}",
                    from_uri="sip:caller@pbx.example.net",
                ),
                customer.name,
                customer.plan.name,
                rule,
            )
        )
    return calls


def sample_calls(count: int, seed: int = 6) -> list:
    """Random calls of the benchmark tenants' customers (CallRequests; http/evapi benches)."""
    return [call.request for call in customer_calls(count, seed)]


def timed(calls: list, table, count: int, screen=None) -> tuple[list[float], float, dict]:
    from routing.resolver import resolve

    latencies, outcomes = [], {}
    clock = time.perf_counter
    started = clock()
    for n in range(count):
        before = clock()
        decision = resolve(calls[n % len(calls)], table=table, screen=screen)
        latencies.append(clock() - before)
        outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
    return latencies, clock() - started, outcomes


def recognition_only(calls: list, table, count: int) -> tuple[list[float], float, list[int]]:
    """Per call: the candidate customers' lookup and recognise_customer(), timed alone."""
    from routing.resolver import recognise_customer
    from tenants.networks import parse_address

    prepared = []
    for call in calls[:count]:
        request = call.request
        address = parse_address(request.source_ip)
        tenant, _ = table.tenant_by_source(address)
        prepared.append((tenant.id, address, request))
    latencies, sizes = [], []
    clock = time.perf_counter
    started = clock()
    for tenant_id, address, request in prepared:
        before = clock()
        candidates = table.customers(
            tenant_id, address=address, callee=request.callee, account=request.account
        )
        recognise_customer(
            candidates,
            address=address,
            port=request.source_port,
            callee=request.callee,
            account=request.account,
        )
        latencies.append(clock() - before)
        sizes.append(len(candidates))
    return latencies, clock() - started, sizes


def plan_named(calls: list) -> list:
    """The same calls with their plan named: resolve() skips customer recognition."""
    found = []
    for call in calls:
        request = call.request
        callee = request.callee
        if "#" in callee:
            callee = "+" + callee.split("#", 1)[1]
        found.append(dataclasses.replace(request, callee=callee, account="", plan=call.plan))
    return found


def _deep(value, seen: set[int]) -> int:
    """Bytes of a tuple/str/int tree, each object counted once."""
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, tuple | list):
        size += sum(_deep(item, seen) for item in value)
    return size


def compiled_memory(compiled) -> str:
    """Where the compiled table's memory goes: the plans' arrays and filters, and the
    pool of shapes, descriptions and target profiles they all share (counted once)."""
    tables = list(compiled._tables.values())
    arrays = sum(
        sys.getsizeof(getattr(t, name))
        for t in tables
        for name in ("keys", "ids", "shape", "text", "target_start", "profile", "target_ids")
    )
    filters = sum(len(t.filter1) + len(t.filter2) for t in tables)
    pools = compiled._pools
    seen: set[int] = set()
    profiles = _deep(pools.profiles, seen)
    texts = _deep(pools.texts, seen)
    shapes = _deep(pools.shapes, seen)
    index = sys.getsizeof(pools.index) + sys.getsizeof(pools.items)
    return (
        f"compiled table by part: arrays {arrays / 2**20:.1f} MB, filters "
        f"{filters / 2**20:.1f} MB; the shared pool: {len(pools.profiles):,} target "
        f"profiles {profiles / 2**20:.1f} MB, descriptions {texts / 2**20:.1f} MB, shapes "
        f"{shapes / 2**20:.1f} MB, its index {index / 2**20:.1f} MB"
    )


# What "the same decision" means: compared one by one, and the whole Decision too.
COMPARED = {
    "outcome": lambda d: d.outcome,
    "code": lambda d: d.code,
    "customer": lambda d: d.customer,
    "plan": lambda d: d.plan,
    "matched prefix": lambda d: d.matched.prefix if d.matched else None,
    "routes": lambda d: d.routes,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--db-calls", type=int, default=5_000)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile 20,000 compiled decisions too."
    )
    parser.add_argument(
        "--screen",
        action="store_true",
        help="Also time the compiled resolver with this process's blocklist store as its "
        "screen (the blocklists in the bench database, see bench/README.md).",
    )
    args = parser.parse_args()
    print(machine())
    setup_django()
    from django.db import connection

    from routing.compiled import CompiledRouteTable
    from routing.models import (
        Carrier,
        Customer,
        CustomerSource,
        DialPrefix,
        RouteTarget,
        RoutingPlan,
        Trunk,
    )
    from routing.resolver import resolve
    from routing.tables import DatabaseRouteTable
    from tenants.models import Tenant

    models = (DialPrefix, RouteTarget, RoutingPlan, Customer, CustomerSource, Carrier, Trunk)
    counts = [model.objects.count() for model in (*models, Tenant)]
    print(
        "table: {:,} prefixes, {:,} targets, {:,} plans, {:,} customers ({:,} sources), "
        "{:,} carriers, {:,} trunks, {:,} tenants ({})".format(*counts, connection.vendor)
    )
    started = time.monotonic()
    calls = customer_calls(20_000)
    rules = Counter(call.rule for call in calls)
    print(
        f"{len(calls):,} calls made in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{rule} {n / len(calls):.0%}" for rule, n in rules.most_common())
    )
    requests = [call.request for call in calls]
    connection.close()  # the loader reads with its own transaction
    baseline, _ = memory_mb(os.getpid())
    started = time.monotonic()
    compiled = CompiledRouteTable(background=False)
    compiled.refresh()
    loaded, peak = memory_mb(os.getpid())
    print(
        f"compiled table loaded in {time.monotonic() - started:.1f} s "
        f"({len(compiled._tables)} plans, "
        f"{sum(len(index.by_name) for index in compiled._customers.values()):,} customers): "
        f"RSS {baseline:.0f} MB before, {loaded:.0f} MB after (+{loaded - baseline:.0f} MB), "
        f"peak {peak:.0f} MB"
    )
    print(compiled_memory(compiled))
    compiled._next_check = float("inf")  # measure decisions, not the 0.2 s poll
    timed(requests, compiled, 2000)  # warm up
    latencies, seconds, outcomes = timed(requests, compiled, args.calls)
    print(summary("compiled resolver", latencies, seconds), outcomes)
    if args.screen:
        from blocklists.lookup import block_store

        screen = block_store()
        screen.wait_ready(120)  # every list compiled
        timed(requests, compiled, 2000, screen)  # warm up
        latencies, seconds, outcomes = timed(requests, compiled, args.calls, screen)
        print(summary("compiled resolver + blocklist screen", latencies, seconds), outcomes)
    ruled = Counter()
    for request in requests[:5000]:
        matched = resolve(request, table=compiled).matched
        if matched is not None:
            ruled["caller"] += bool(matched.caller_prefix)
            ruled["scheduled"] += matched.schedule_id is not None
            ruled["any"] += 1
    print(
        f"route rules: of {ruled['any']:,} matched calls, {ruled['caller']:,} took a "
        f"caller-conditioned route and {ruled['scheduled']:,} a scheduled one"
    )

    named = plan_named(calls)
    timed(named, compiled, 2000)
    latencies, seconds, outcomes = timed(named, compiled, args.calls)
    print(summary("compiled resolver, plan named (no recognition)", latencies, seconds), outcomes)

    latencies, seconds, sizes = recognition_only(calls, compiled, len(calls))
    ordered = sorted(sizes)
    print(
        summary("compiled: candidate customers + recognise_customer() alone", latencies, seconds)
        + f"; candidates per call: mean {sum(sizes) / len(sizes):.2f}, "
        f"p99 {percentile(ordered, 0.99)}, max {ordered[-1]}"
    )

    by_rule: dict[str, list[float]] = {}
    wrong = Counter()
    clock = time.perf_counter
    for call in calls:
        before = clock()
        decision = resolve(call.request, table=compiled)
        by_rule.setdefault(call.rule, []).append(clock() - before)
        name = decision.customer.name if decision.customer else None
        if name != call.customer or (decision.plan or call.plan) != call.plan:
            wrong[call.rule] += 1
    print(
        "compiled p50 by how the customer is recognised: "
        + ", ".join(
            f"{rule} {percentile(sorted(values), 0.5) * 1000:.3f} ms"
            for rule, values in sorted(by_rule.items())
        )
    )
    print(
        f"calls recognised as another customer or plan than generated: {sum(wrong.values())}"
        + (f" {dict(wrong)}" if wrong else "")
    )

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        timed(requests, compiled, 20_000)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)

    database = DatabaseRouteTable()
    latencies, seconds, outcomes = timed(requests, database, args.db_calls)
    print(summary("database resolver", latencies, seconds), outcomes)
    differ: Counter = Counter()
    whole = 0
    for request in requests[:2000]:
        mine = resolve(request, table=compiled)
        theirs = resolve(request, table=database)
        for name, value in COMPARED.items():
            differ[name] += value(mine) != value(theirs)
        whole += dataclasses.replace(mine, decision_id="") != dataclasses.replace(
            theirs, decision_id=""
        )
    print(
        "decisions that differ between the two tables on 2,000 calls: "
        + ", ".join(f"{name} {n}" for name, n in differ.items())
        + f"; whole decision (trace included) {whole}"
    )


if __name__ == "__main__":
    main()
