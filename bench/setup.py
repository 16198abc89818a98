"""Create the benchmark database with the 1M-prefix table (idempotent; rerun to refresh).

    python -m bench.setup                    # 1,000,000 prefixes in 4 tenants
    python -m bench.setup --prefixes 100000  # a smaller table

Uses BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/routing_bench),
creates the database if needed, migrates it, creates the tenants, carriers and
trunks, writes bench/data/<tenant>.csv and imports each with import_prefixes
--replace, printing each import's time and peak memory.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from bench.common import DATA, database_url, machine, manage, run_measured, setup_django
from bench.generate import split, write_tenant_csv


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
    args = parser.parse_args()
    print(machine())
    create_database(database_url())
    run_measured(manage("migrate", "--verbosity", "0"))
    setup_django()
    from bench.generate import ensure_tenants

    ensure_tenants()
    for spec, count in split(args.prefixes):
        path = DATA / f"{spec.slug}-{count}.csv"
        if args.regenerate or not path.exists():
            write_tenant_csv(spec, count, path)
        command = manage("import_prefixes", str(path), "--tenant", spec.slug, "--replace")
        seconds, peak = run_measured([*command, "--no-progress"])
        print(f"import {spec.slug}: {count:,} rows in {seconds:.1f} s, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
