"""Rate deck benchmark: a 1M-row import, 20 x 100k decks in memory, rate_for(), live in 5 s.

    python -m bench.rates_bench              # everything (about 3-5 minutes)
    python -m bench.rates_bench --rows 200000 --vendors 5 --deck 20000   # smaller

On BENCH_DATABASE_URL (migrated here; a tenant `rates-bench` with 21 carriers):

1. `manage.py import_rates` of a generated 1,000,000-row deck, a separate process:
   wall time and peak RSS (target < 60 s on PostgreSQL);
2. 20 vendors with a 100,000-prefix deck each, imported, then loaded into a fresh
   `rating.lookup.RateStore` in this process: load time and RSS before/after
   (target: the process stays < 300 MB);
3. `rate_for()` one by one on 100,000 numbers (90% under a prefix of the deck):
   p50/p99 per lookup; then `sell_rate_for()` likewise, with a plan's deck and a
   customer's deck of 100,000 prefixes each (half the calls by a customer with
   its own deck, half by one that falls back to the plan's);
4. a new 100,000-row deck imported here while another process polls rate_for():
   seconds from the import's commit until that process answers from the new deck
   (from the database while it builds), and until it answers from memory
   (target < 5 s).

The generated decks are deleted at the end (the 1M deck too).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.common import DATA, machine, manage, memory_mb, percentile, run_measured, server_env
from bench.common import setup_django as _setup_django
from bench.setup import create_database

TENANT = "rates-bench"
HEADER = "prefix,description,rate,connect_fee,initial_increment,next_increment\n"
# Country codes weighted roughly like wholesale traffic; prefixes grow under them.
CODES = ["1", "7", "20", "27", "33", "34", "39", "44", "49", "52", "55", "61", "62", "63"]
CODES += ["81", "86", "90", "91", "92", "212", "234", "254", "351", "380", "880", "966", "971"]


def prefixes(count: int, seed: int) -> list[str]:
    """`count` distinct prefixes of 2-9 digits under real country codes, sorted."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        code = rng.choice(CODES)
        found.add(code + str(rng.randrange(10 ** rng.randint(1, 9 - len(code)))))
    return sorted(found)


def write_deck(path: Path, count: int, seed: int) -> Path:
    """A vendor's deck as the importer reads it (deterministic for a seed)."""
    rng = random.Random(seed + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for prefix in prefixes(count, seed):
            rate = f"0.{rng.randint(50, 400_000):06d}".rstrip("0")  # never 1e-05
            fee = rng.choice(("0", "0", "0", "0.01"))
            initial, following = rng.choice(((60, 60), (30, 6), (1, 1), (60, 1)))
            out.write(f"{prefix},Destination {prefix[:3]},{rate},{fee},{initial},{following}\n")
    return path


def setup_django() -> None:
    create_database(server_env()["DATABASE_URL"])
    run_measured(manage("migrate", "--verbosity", "0"))
    _setup_django()


def carriers(count: int) -> list:
    from routing.models import Carrier
    from tenants.models import Tenant

    tenant, _ = Tenant.objects.get_or_create(slug=TENANT, defaults={"name": "Rates bench"})
    return [
        Carrier.objects.get_or_create(tenant=tenant, name=f"Vendor {i:02d}")[0]
        for i in range(count)
    ]


def sell_owners() -> tuple:
    """The bench tenant's plan and two customers on it (the first gets its own deck)."""
    from routing.models import Customer, RoutingPlan
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug=TENANT)
    plan, _ = RoutingPlan.objects.get_or_create(tenant=tenant, name="Bench plan")
    own, other = (
        Customer.objects.get_or_create(
            tenant=tenant, name=name, defaults={"plan": plan, "account": name}
        )[0]
        for name in ("bench-own-deck", "bench-plan-deck")
    )
    return plan, own, other


def import_file(owner, path: Path, effective):
    from rating.importing import import_deck
    from routing.models import Carrier, Customer

    field = {Carrier: "carrier", Customer: "customer"}.get(type(owner), "plan")
    return import_deck(
        lambda: path.open(encoding="utf-8", newline=""),
        **{field: owner},
        effective_from=effective,
        currency="EUR",
        name=path.name,
    ).deck


def watch(carrier_id: int, number: str, known_deck: int) -> None:
    """Child process: poll rate_for() and print when a deck other than `known_deck` answers."""
    _setup_django()
    from django.utils import timezone

    from rating.lookup import RateStore

    store = RateStore()
    store.wait_ready(120)
    print("ready", flush=True)
    seen = False
    while True:
        match = store.rate_for(carrier_id, number, timezone.now())
        if match is not None and match.deck_id != known_deck:
            if not seen:
                print(f"seen {time.time()}", flush=True)
                seen = True
            if store.is_built(carrier_id):  # packed: answered from memory
                print(f"compiled {time.time()}", flush=True)
                return
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the big import.")
    parser.add_argument("--vendors", type=int, default=20)
    parser.add_argument("--deck", type=int, default=100_000, help="Prefixes per vendor deck.")
    parser.add_argument("--lookups", type=int, default=100_000)
    args = parser.parse_args()
    print(machine())
    setup_django()
    from datetime import timedelta

    from django.db import close_old_connections
    from django.utils import timezone

    from rating import services
    from rating.lookup import RateStore
    from rating.models import RateDeck

    vendors = carriers(args.vendors + 1)
    big_carrier, vendors = vendors[-1], vendors[:-1]
    made: list[int] = []

    # 1. The big import, as operators run it.
    big = DATA / f"rates-{args.rows}.csv"
    if not big.exists():
        write_deck(big, args.rows, seed=1000)
    effective = timezone.now() - timedelta(days=1)
    command = manage(
        "import_rates", str(big), "--tenant", TENANT, "--carrier", big_carrier.name,
        "--effective", effective.isoformat(), "--currency", "EUR", "--no-progress",
    )  # fmt: skip
    seconds, peak = run_measured(command)
    print(f"import_rates {args.rows:,} rows: {seconds:.1f} s, peak RSS {peak:.0f} MB")
    # Deleted at once, so that the memory figure below is the 20 vendors' alone.
    for deck in RateDeck.objects.filter(carrier=big_carrier):
        services.delete_deck(user=None, deck=deck)

    # 2. 20 vendors x 100k prefixes, then a fresh store in this process.
    started = time.monotonic()
    for i, carrier in enumerate(vendors):
        path = DATA / f"rates-vendor{i:02d}-{args.deck}.csv"
        if not path.exists():
            write_deck(path, args.deck, seed=i)
        made.append(import_file(carrier, path, effective - timedelta(seconds=i)).pk)
    print(f"{len(vendors)} decks of {args.deck:,} imported in {time.monotonic() - started:.1f} s")
    close_old_connections()
    before = memory_mb(os.getpid())[0]
    started = time.monotonic()
    store = RateStore(poll_interval=0.2)
    store.wait_ready(600)
    after = memory_mb(os.getpid())[0]
    rates = sum(len(d) for c in store.built_owners().values() for d in c.packed.values())
    print(
        f"rate store: {store.packed_decks()} decks, {rates:,} rates loaded in "
        f"{time.monotonic() - started:.1f} s; RSS {before:.0f} -> {after:.0f} MB "
        f"(+{after - before:.0f} MB)"
    )

    # Sell decks after the memory figure (the vendors' alone): a plan's and a customer's.
    plan, own, other = sell_owners()
    vendor_files = [DATA / f"rates-vendor{i:02d}-{args.deck}.csv" for i in range(2)]
    made.append(import_file(plan, vendor_files[0], effective).pk)
    made.append(import_file(own, vendor_files[-1 if len(vendors) > 1 else 0], effective).pk)
    time.sleep(0.3)
    store.wait_ready(600)

    # 3. rate_for() one by one, then sell_rate_for().
    rng = random.Random(5)
    samples = [prefixes(args.deck, seed=i) for i in range(min(3, len(vendors)))]
    now = timezone.now()
    calls = []
    for _ in range(args.lookups):
        v = rng.randrange(len(samples))
        number = (
            rng.choice(samples[v]) + str(rng.randrange(10**6))
            if rng.random() < 0.9
            else (str(rng.randrange(10**11)))
        )
        calls.append((vendors[v].pk, number))
    timings = []
    found = 0
    for carrier_id, number in calls:
        t = time.perf_counter()
        match = store.rate_for(carrier_id, number, now)
        timings.append(time.perf_counter() - t)
        found += match is not None
    timings.sort()
    print(
        f"rate_for: {len(calls):,} lookups, {found:,} priced, p50 "
        f"{percentile(timings, 0.5) * 1e6:.1f} us, p99 {percentile(timings, 0.99) * 1e6:.1f} us"
    )
    timings, found = [], 0
    for i, (_, number) in enumerate(calls):
        customer = own if i % 2 else other
        t = time.perf_counter()
        match = store.sell_rate_for(plan_id=plan.pk, customer_id=customer.pk, digits=number, at=now)
        timings.append(time.perf_counter() - t)
        found += match is not None
    timings.sort()
    print(
        f"sell_rate_for: {len(calls):,} lookups (half by a customer with its own deck), "
        f"{found:,} priced, p50 {percentile(timings, 0.5) * 1e6:.1f} us, "
        f"p99 {percentile(timings, 0.99) * 1e6:.1f} us"
    )

    # 4. A new 100k deck, live in another process.
    carrier = vendors[0]
    number = samples[0][len(samples[0]) // 2] + "1234"
    known = store.rate_for(carrier.pk, number, timezone.now()).deck_id
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.rates_bench", "--watch", str(carrier.pk), number, str(known)],
        env=server_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        path = DATA / f"rates-vendor00-{args.deck}.csv"
        deck = import_file(carrier, path, timezone.now())
        committed = time.time()
        made.append(deck.pk)
        seen = float(child.stdout.readline().split()[1])
        compiled = float(child.stdout.readline().split()[1])
        print(
            f"new {args.deck:,}-row deck in another process: answered {seen - committed:.2f} s "
            f"after commit (database while building), from memory after "
            f"{compiled - committed:.2f} s"
        )
    finally:
        child.kill()
        child.wait()

    for pk in made:
        services.delete_deck(user=None, deck=RateDeck.objects.get(pk=pk))
    print(machine())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--watch":
        watch(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    else:
        main()
