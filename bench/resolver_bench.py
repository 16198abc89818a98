"""Resolver alone: decisions/s and p50/p99 on the benchmark table, compiled and database.

    python -m bench.resolver_bench [--calls 50000] [--db-calls 5000]

One process: loads the compiled table (time, RSS before and after), then resolves
random calls (90% under a prefix of the table, 10% random numbers; sources from
every tenant) one at a time, timing each, with both tables; and checks that both
give the same decisions on a sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import random
import time

from bench.common import machine, memory_mb, setup_django, summary


def sample_calls(count: int, seed: int = 6) -> list:
    """Random calls of the benchmark tenants, from their own source networks."""
    from django.db import connection

    from routing.resolver import CallRequest

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.network, p.prefix FROM routing_dialprefix p "
            "JOIN tenants_tenantsource s ON s.tenant_id = p.tenant_id "
            "ORDER BY random() LIMIT %s",
            [count],
        )
        rows = cursor.fetchall()
    rng = random.Random(seed)
    calls = []
    for n, (network, prefix) in enumerate(rows):
        source = str(ipaddress.ip_network(network)[rng.randint(1, 250)])
        if rng.random() < 0.1:
            number = str(rng.randint(10**10, 10**12))
        else:
            number = prefix + "".join(rng.choices("0123456789", k=max(0, 11 - len(prefix))))
        calls.append(
            CallRequest(
                callee="+" + number,
                caller="+4930" + str(rng.randint(10**6, 10**7)),
                source_ip=source,
                call_id=f"bench-{n}",
                from_uri="sip:caller@pbx.example.net",
            )
        )
    return calls


def timed(calls: list, table, count: int) -> tuple[list[float], float, dict]:
    from routing.resolver import resolve

    latencies, outcomes = [], {}
    clock = time.perf_counter
    started = clock()
    for n in range(count):
        before = clock()
        decision = resolve(calls[n % len(calls)], table=table)
        latencies.append(clock() - before)
        outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
    return latencies, clock() - started, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--db-calls", type=int, default=5_000)
    args = parser.parse_args()
    print(machine())
    setup_django()
    from django.db import connection

    from routing.compiled import CompiledRouteTable
    from routing.resolver import resolve
    from routing.tables import DatabaseRouteTable

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM routing_dialprefix")
        print(f"table: {cursor.fetchone()[0]:,} prefixes ({connection.vendor})")
    calls = sample_calls(20_000)
    baseline, _ = memory_mb(os.getpid())
    started = time.monotonic()
    compiled = CompiledRouteTable(background=False)
    compiled.refresh()
    loaded, peak = memory_mb(os.getpid())
    print(
        f"compiled table loaded in {time.monotonic() - started:.1f} s: RSS {baseline:.0f} MB "
        f"before, {loaded:.0f} MB after (+{loaded - baseline:.0f} MB), peak {peak:.0f} MB"
    )
    compiled._next_check = float("inf")  # measure decisions, not the 0.2 s poll
    timed(calls, compiled, 2000)  # warm up
    latencies, seconds, outcomes = timed(calls, compiled, args.calls)
    print(summary("compiled resolver", latencies, seconds), outcomes)
    database = DatabaseRouteTable()
    latencies, seconds, outcomes = timed(calls, database, args.db_calls)
    print(summary("database resolver", latencies, seconds), outcomes)
    differ = sum(
        dataclasses.replace(resolve(call, table=compiled), decision_id="")
        != dataclasses.replace(resolve(call, table=database), decision_id="")
        for call in calls[:2000]
    )
    print(f"decisions that differ between the two tables on 2,000 calls: {differ}")


if __name__ == "__main__":
    main()
