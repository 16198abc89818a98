"""Create the benchmark database with the 1M-prefix table (idempotent; rerun to refresh).

    python -m bench.setup                    # 1,000,000 prefixes in 200 plans of 4 tenants
    python -m bench.setup --prefixes 100000  # a smaller table
    python -m bench.setup --flat             # 1M in one plan per tenant, no customers
    python -m bench.setup --rules 0.1        # 10% of prefixes with route rules

Uses BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/routing_bench),
creates the database if needed, migrates it, creates the tenants, their plans,
carriers and trunks and their 2,000 customers (bench.generate), writes
bench/data/<tenant>/<plan>-<n>.csv and imports each with
`import_prefixes FILE --tenant SLUG --plan NAME --replace` (two at a time: imports
of different plans run alongside), printing the big imports' time and peak memory
and each tenant's totals.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from bench.common import database_url, machine, manage, run_measured, setup_django
from bench.generate import plan_file, plan_split, split, write_plan_csv


def create_database(url: str) -> None:
    """CREATE DATABASE if it does not exist yet (PostgreSQL only)."""
    import psycopg

    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        return
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--regenerate", action="store_true", help="Rewrite the CSV files.")
    parser.add_argument("--jobs", type=int, default=2, help="Imports run at the same time.")
    parser.add_argument(
        "--flat",
        action="store_true",
        help="The table as before plans: one plan per tenant, only default customers "
        "(use another BENCH_DATABASE_URL; the resolver bench on it is the baseline).",
    )
    parser.add_argument(
        "--rules",
        type=float,
        default=0.0,
        help="Share of prefixes (0-1) that also get a caller-conditioned route, half of them "
        "peak and off-peak scheduled routes too (bench.generate.SCHEDULES).",
    )
    args = parser.parse_args()
    if args.flat:
        from dataclasses import replace

        from bench import generate

        generate.TENANTS[:] = [replace(s, plans=1, customers=0) for s in generate.TENANTS]
    print(machine())
    began = time.monotonic()
    create_database(database_url())
    run_measured(manage("migrate", "--verbosity", "0"))
    setup_django()
    from bench.generate import ensure_customers, ensure_tenants

    ensure_tenants()
    imports = []
    for spec, count in split(args.prefixes):
        started = time.monotonic()
        written = ensure_customers(spec)
        print(
            f"{spec.slug}: {spec.customers:,} customers "
            + (f"saved in {time.monotonic() - started:.1f} s" if written else "already there")
        )
        for plan, plan_count in plan_split(spec, count):
            path = plan_file(spec, plan, plan_count, rules=args.rules)
            if args.regenerate or not path.exists():
                write_plan_csv(spec, plan, plan_count, path, rules=args.rules)
            imports.append((spec.slug, plan, plan_count, path))
    print(f"{len(imports)} plans' CSV files ready after {time.monotonic() - began:.0f} s")

    def run(job: tuple) -> tuple:
        slug, plan, count, path = job
        command = manage("import_prefixes", str(path), "--tenant", slug, "--plan", plan)
        seconds, peak = run_measured([*command, "--replace", "--yes", "--no-progress"])
        if count >= 20_000:
            print(f"import {slug} / {plan}: {count:,} rows in {seconds:.1f} s, peak {peak:.0f} MB")
        return slug, count, seconds, peak

    totals: dict[str, list[float]] = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        biggest_first = sorted(imports, key=lambda job: -job[2])
        try:
            for slug, count, seconds, peak in pool.map(run, biggest_first):
                total = totals.setdefault(slug, [0, 0, 0.0, 0.0])
                total[0] += 1
                total[1] += count
                total[2] += seconds
                total[3] = max(total[3], peak)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the imports not started yet
            raise
    # What autovacuum would do after the imports (it may be off, as on the development
    # VM): without statistics the planner reads every plan's routes for the compiled
    # table with a parallel scan of the whole table and JIT-compiles each query.
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_dialprefix, routing_routetarget")
    print(f"ANALYZE in {time.monotonic() - started:.1f} s")
    for slug, (plans, rows, seconds, peak) in totals.items():
        print(
            f"{slug}: {int(plans)} plans, {int(rows):,} rows, {seconds:.0f} s of imports, "
            f"peak RSS {peak:.0f} MB"
        )
    print(f"setup done in {time.monotonic() - began:.0f} s ({args.jobs} imports at a time)")


if __name__ == "__main__":
    main()
