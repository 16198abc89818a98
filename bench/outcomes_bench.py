"""Outcome events: events/s of one process through the whole ingest path.

    python -m bench.outcomes_bench [--events 200000] [--batch 5000]

In a scratch PostgreSQL database (`routing_outcomes_bench` on the bench server, created
and migrated if needed; BENCH_DATABASE_URL overrides it), one tenant with 20 trunks.
Builds the payloads first (attempts and call ends as Kamailio would send them: 20
trunks, 50 prefixes, 10 customers, spread over 5 minutes, 1% duplicates, 0.5%
malformed), then, timed, one thread does what the bridge's loop and the flusher do:
`kamailio.events.parse_event` + `Aggregator.add` for each payload and a
`flush()` (additive upserts) every `--batch` events and at the end. Prints events/s
of the whole path and of its parts, and the rows written. The goal is 5,000 events/s
per process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from bench.common import DEFAULT_DATABASE_URL, machine, setup_django

SCRATCH_URL = DEFAULT_DATABASE_URL.rsplit("/", 1)[0] + "/routing_outcomes_bench"


def payloads(count: int, trunk_ids: list[int], now: float) -> list[bytes]:
    rng = random.Random(7)
    out: list[bytes] = []
    n = 0
    while len(out) < count:
        n += 1
        route = rng.randrange(3)
        code = rng.choice([200] * 5 + [486, 480, 487, 404, 503, 408, 603])
        common = {
            "event": "sip-outcome",
            "decision_id": f"{n:032x}",
            "tenant": "outcomes-bench",
            "route": route,
            "trunk_id": rng.choice(trunk_ids),
            "prefix": f"33{rng.randrange(50)}",
            "customer": f"customer-{rng.randrange(10)}",
            "call_id": f"{n}@pbx.example.net",
            "at": now - rng.uniform(0, 300),
        }
        attempt = dict(common, kind="attempt", code=code, pdd_ms=rng.randrange(100, 6000))
        if code == 200:
            attempt["answer_ms"] = attempt["pdd_ms"] + rng.randrange(1000, 20000)
        out.append(json.dumps(attempt).encode())
        if code == 200:
            out.append(
                json.dumps(dict(common, kind="end", duration_s=rng.uniform(1, 600))).encode()
            )
        if rng.random() < 0.01:
            out.append(out[-1])  # a duplicate
        if rng.random() < 0.005:
            out.append(b'{"event":"sip-outcome","kind":"attempt","code":"x"}')
    return out[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000, help="Events between two flushes.")
    options = parser.parse_args()

    os.environ.setdefault("BENCH_DATABASE_URL", SCRATCH_URL)
    from bench.setup import create_database

    create_database(os.environ["BENCH_DATABASE_URL"])
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from kamailio.events import Malformed, parse_event
    from outcomes.ingest import Aggregator
    from outcomes.models import OutcomeBucket, OutcomeCount
    from routing.models import Carrier, Trunk
    from tenants.models import Tenant

    tenant, _ = Tenant.objects.get_or_create(slug="outcomes-bench", defaults={"name": "Bench"})
    carrier, _ = Carrier.objects.get_or_create(tenant=tenant, name="Bench carrier")
    trunk_ids = [
        Trunk.objects.get_or_create(carrier=carrier, name=f"t{k}", defaults={"host": "h.example"})[
            0
        ].pk
        for k in range(20)
    ]
    OutcomeCount.objects.all().delete()
    OutcomeBucket.objects.all().delete()

    now = time.time()
    data = payloads(options.events, trunk_ids, now)
    aggregator = Aggregator(window=600, max_keys=200_000)
    parse_s = add_s = flush_s = 0.0
    flushes = buckets = 0
    started = time.perf_counter()
    for start in range(0, len(data), options.batch):
        t0 = time.perf_counter()
        events = [parse_event(payload) for payload in data[start : start + options.batch]]
        t1 = time.perf_counter()
        for event in events:
            if isinstance(event, Malformed):
                aggregator.refuse("malformed")
            else:
                aggregator.add(event)
        t2 = time.perf_counter()
        buckets += aggregator.flush().buckets
        t3 = time.perf_counter()
        parse_s, add_s, flush_s = parse_s + t1 - t0, add_s + t2 - t1, flush_s + t3 - t2
        flushes += 1
    total = time.perf_counter() - started

    count = len(data)
    print(machine())
    print(
        f"{count} events in {total:.2f} s: {count / total:,.0f} events/s "
        f"(parse {count / parse_s:,.0f}/s, aggregate {count / add_s:,.0f}/s, "
        f"flush {flushes} x {flush_s / flushes * 1000:.0f} ms = {count / flush_s:,.0f}/s)"
    )
    print(
        f"accepted {aggregator.accepted}, written {aggregator.written}, "
        f"refused {dict(aggregator.refused)}; {buckets} bucket upserts, "
        f"{OutcomeBucket.objects.count()} buckets, {OutcomeCount.objects.count()} counts"
    )


if __name__ == "__main__":
    main()
