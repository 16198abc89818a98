"""Import benchmark: a 1,000,000-row CSV into one tenant, timed, with peak memory.

    python -m bench.import_bench

Three runs of `manage.py import_prefixes`, each a separate process whose wall time
and peak RSS are reported: into an empty tenant (1M created), the same file again
(1M overwritten), and an empty file with --replace (1M deleted), which leaves the
benchmark database as bench.setup made it.
"""

from __future__ import annotations

from bench.common import DATA, machine, manage, run_measured, setup_django
from bench.generate import TenantSpec, write_tenant_csv

SPEC = TenantSpec("import-bench", "10.9.0.0/16", 1.0, 8, 3)
ROWS = 1_000_000


def main() -> None:
    print(machine())
    setup_django()
    from bench import generate

    generate.TENANTS.append(SPEC)
    generate.ensure_tenants()
    path = DATA / f"{SPEC.slug}-{ROWS}.csv"
    if not path.exists():
        write_tenant_csv(SPEC, ROWS, path)
    empty = DATA / "empty.csv"
    empty.write_text("prefix\n")
    command = manage("import_prefixes", str(empty), "--tenant", SPEC.slug, "--replace", "--yes")
    run_measured([*command, "--no-progress"])  # start from an empty tenant
    for label, source in (
        ("1M rows into an empty tenant", path),
        ("1M rows over the same 1M (overwrite)", path),
        ("empty file with --replace (1M deleted)", empty),
    ):
        seconds, peak = run_measured(
            manage("import_prefixes", str(source), "--tenant", SPEC.slug, "--replace", "--yes")
        )
        print(f"import {label}: {seconds:.1f} s, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
