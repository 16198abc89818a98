"""Versions benchmark: publish, propagation to another process, rollback, storage.

    python -m bench.versions_bench                       # 10,000 and 1,000,000 prefixes
    python -m bench.versions_bench --sizes 10000         # the small plan only
    python -m bench.versions_bench --storage 50          # + 50 versions of the 1M plan
    python -m bench.versions_bench --storage 50 --sizes 1000000 --skip-publish

On BENCH_DATABASE_URL (default: its own database, routing_bench_versions, created
and migrated): a tenant `versions-bench` (8 carriers of 3 trunks) with one plan per
size, each imported from a bench.generate CSV with `import_prefixes --replace` and
published once (staged). Then, per size:

(a) publish of a small change (10 routes' targets), of a large one (10% of the
    routes: changed targets, some routes added, some removed) and of a whole
    re-import of the plan's CSV with 1% of the routes changed (`import_prefixes
    --replace` writes every route again, with new ids): publish() wall time, and for
    the large change the diff read alone (diff(plan, live, DRAFT)) to see where it goes;
(b) propagation: a second process (`--watch`, production's CompiledRouteTable with
    its poller thread, 0.2 s) asks, every 2 ms, for the routes of a changed prefix as
    the plan's live version has them; from the publish's commit to (1) the first
    answer of the new version (from memory, or from the database while the plan's
    table is rebuilt) and (2) the plan's table compiled in memory at that version
    again. The answer it got is compared with the database's at that version;
(c) rollback to the version before the large change: rollback() wall time and its
    propagation, measured the same way.

--storage N: N versions of the biggest plan, each changing 1% of its routes (of
which 5% added and 5% removed), then pg_total_relation_size of
routing_publishedroute (table + indexes) and its row count after version 1 and after
version N, the time of diff(1, N) and of diff(live, DRAFT). Best on a database of
its own (the sizes are the whole table's).

Draft edits are SQL in one transaction with the change triggers off, as an import
does (one 'table' change): a staged plan's draft edits never reach calls.
`/proc/loadavg` is printed before and after every figure.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import os
import pstats
import random
import subprocess
import sys
import time
from pathlib import Path

from bench.common import DATA, ROOT, machine, manage, memory_mb, run_measured, server_env
from bench.common import setup_django as _setup_django
from bench.setup import create_database

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/routing_bench_versions"
TENANT = "versions-bench"
SMALL_CHANGE = 10
LARGE_SHARE = 0.10
REIMPORT_SHARE = 0.01
STORAGE_SHARE = 0.01
WATCH_TIMEOUT = 300.0


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def setup(url: str):
    os.environ["BENCH_DATABASE_URL"] = url
    # A 1M-row import's COPY and a first publish's INSERT of every route take longer
    # than the default 10 s statement_timeout on a loaded machine.
    os.environ.setdefault("DB_STATEMENT_TIMEOUT_MS", "0")
    create_database(url)
    run_measured(manage("migrate", "--verbosity", "0"))
    _setup_django()
    from bench import generate

    spec = generate.TenantSpec(TENANT, "10.8.0.0/16", 1.0, 8, 3, plans=3)
    generate.TENANTS[:] = [spec]
    generate.ensure_tenants()
    return spec


def plan_name(size: int) -> str:
    return f"Size {size}"


def csv_path(spec, size: int) -> Path:
    return DATA / spec.slug / f"size-{size}.csv"


def import_csv(spec, size: int, path: Path) -> float:
    command = manage("import_prefixes", str(path), "--tenant", spec.slug, "--plan", plan_name(size))
    seconds, _ = run_measured([*command, "--replace", "--yes", "--no-progress"])
    return seconds


def ensure_plan(spec, size: int):
    """The plan of `size` routes, imported and published once (skipped when done)."""
    from django.db import connection

    from bench.generate import write_plan_csv
    from routing.models import RoutingPlan
    from tenants.models import Tenant
    from versions.publishing import publish

    tenant = Tenant.objects.get(slug=spec.slug)
    plan, _ = RoutingPlan.objects.get_or_create(tenant=tenant, name=plan_name(size))
    if plan.published_version is not None:
        print(f"plan {plan.name}: at version {plan.published_version} already")
        return plan
    path = csv_path(spec, size)
    if not path.exists():
        write_plan_csv(spec, plan.name, size, path)
    before = loadavg()
    seconds = import_csv(spec, size, path)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_dialprefix, routing_routetarget")
    print(f"plan {plan.name}: imported {size:,} in {seconds:.1f} s (load {before} -> {loadavg()})")
    before = loadavg()
    started = time.monotonic()
    publish(plan, comment="first publish")
    seconds = time.monotonic() - started
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE routing_publishedroute")
    print(
        f"plan {plan.name}: first publish (every route) in {seconds:.1f} s "
        f"(load {before} -> {loadavg()})"
    )
    plan.refresh_from_db()
    return plan


# --- Draft edits ----------------------------------------------------------------------


def route_ids(plan) -> list[tuple[int, str]]:
    """(id, prefix) of the plan's draft routes that have targets (a change is visible)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.id, p.prefix FROM routing_dialprefix p WHERE p.plan_id = %s AND "
            "EXISTS (SELECT 1 FROM routing_routetarget t WHERE t.prefix_id = p.id) ORDER BY p.id",
            [plan.pk],
        )
        return cursor.fetchall()


def edit_draft(
    plan, rng: random.Random, *, changed: int, added: int = 0, removed: int = 0, probe=None
) -> str:
    """Change `changed` routes' targets (their weights), add and remove routes, in one
    transaction with the triggers off (one 'table' change, as an import records).
    Returns the prefix of a changed route (`probe` if given)."""
    from django.db import connection, transaction

    from routing import changes
    from routing.models import DialPrefix

    routes = route_ids(plan)
    chosen = rng.sample(routes, changed + removed)
    if probe is not None:
        chosen = [r for r in chosen if r[1] != probe]
        chosen.insert(0, next(r for r in routes if r[1] == probe))
    to_change, to_remove = chosen[:changed], chosen[changed : changed + removed]
    columns = [f.column for f in DialPrefix._meta.concrete_fields if f.column != "id"]
    existing = set(
        DialPrefix.objects.filter(plan=plan).values_list("prefix", flat=True).iterator(10_000)
    )
    with transaction.atomic(), changes.bulk_writes(), connection.cursor() as cursor:
        ids = [route_id for route_id, _ in to_change]
        for start in range(0, len(ids), 10_000):
            cursor.execute(
                "UPDATE routing_routetarget SET weight = CASE WHEN weight >= 100 THEN 1 "
                "ELSE weight + 1 END WHERE prefix_id = ANY(%s)",
                [ids[start : start + 10_000]],
            )
        gone = [route_id for route_id, _ in to_remove]
        if gone:
            cursor.execute("DELETE FROM routing_routetarget WHERE prefix_id = ANY(%s)", [gone])
            cursor.execute("DELETE FROM routing_dialprefix WHERE id = ANY(%s)", [gone])
        removed_ids = set(gone)
        kept = [route for route in routes if route[0] not in removed_ids]
        for _ in range(added):
            source_id, source_prefix = rng.choice(kept)
            prefix = source_prefix
            while prefix in existing:
                prefix = source_prefix + "".join(rng.choices("0123456789", k=rng.randint(1, 3)))
            existing.add(prefix)
            select = ", ".join("%s" if c == "prefix" else c for c in columns)
            cursor.execute(
                f"INSERT INTO routing_dialprefix ({', '.join(columns)}) "  # noqa: S608
                f"SELECT {select} FROM routing_dialprefix WHERE id = %s RETURNING id",
                [prefix, source_id],
            )
            new_id = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO routing_routetarget "
                "(prefix_id, trunk_id, priority, weight, schedule_id) "
                "SELECT %s, trunk_id, priority, weight, schedule_id "
                "FROM routing_routetarget WHERE prefix_id = %s",
                [new_id, source_id],
            )
        changes.record_change(changes.TABLE, tenant_id=plan.tenant_id, key=str(plan.pk))
    return to_change[0][1]


def reimport_csv(spec, size: int, rng: random.Random, version: int) -> tuple[Path, str]:
    """The plan's CSV with REIMPORT_SHARE of its routes' targets changed; and one of them."""
    source = csv_path(spec, size)
    target = DATA / spec.slug / f"size-{size}-v{version}.csv"
    with source.open(newline="", encoding="utf-8") as src:
        rows = list(csv.DictReader(src))
    profiles = sorted({row["targets"] for row in rows if row["targets"]})
    probe = ""
    for row in rows:
        if row["targets"] and row["is_active"] == "yes" and rng.random() < REIMPORT_SHARE:
            row["targets"] = rng.choice([p for p in profiles[:50] if p != row["targets"]])
            probe = probe or row["prefix"]
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target, probe


# --- The watcher: a second process with production's compiled table --------------------


def watch_main() -> None:
    """`--watch`: load the compiled table, then answer "watch PLAN PREFIX" lines on stdin."""
    _setup_django()
    from routing.compiled import CompiledRouteTable

    started = time.monotonic()
    table = CompiledRouteTable(poller=True)
    table.wait_ready(1200)
    rss = memory_mb(os.getpid())[0]
    print(json.dumps({"ready": time.monotonic() - started, "rss": rss}), flush=True)

    def answer(plan_id: int, prefix: str) -> tuple[int | None, list, bool]:
        plan = table._plans.get(plan_id)
        version = plan.published_version if plan is not None else None
        compiled = table._tables.get(plan_id)
        in_memory = compiled is not None and compiled.state[0] == version
        routes = table.routes(plan_id, [prefix], version)
        return version, signature(routes), in_memory

    for line in sys.stdin:
        _command, plan_id, prefix = line.split()
        plan_id = int(plan_id)
        before_version, _, _ = answer(plan_id, prefix)
        print(json.dumps({"armed": before_version}), flush=True)
        deadline = time.monotonic() + WATCH_TIMEOUT
        seen = None
        while time.monotonic() < deadline:
            version, found, in_memory = answer(plan_id, prefix)
            now = time.time()
            if seen is None and version != before_version:
                seen = {"new_at": now, "version": version, "answer": found}
                seen["from_memory"] = in_memory
            if seen is not None and in_memory and version == seen["version"]:
                seen["memory_at"] = now
                break
            time.sleep(0.002)
        print(json.dumps(seen or {"timeout": True}), flush=True)


def signature(routes) -> list:
    return sorted(
        [row.prefix, row.id, [[t.trunk.id, t.priority, t.weight] for t in targets]]
        for row, targets in routes
    )


class Watcher:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.versions_bench", "--watch"],
            cwd=ROOT,
            env=server_env(LOG_LEVEL="WARNING"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.read()
        print(
            f"watcher: compiled table of every plan ready in {ready['ready']:.1f} s, "
            f"RSS {ready['rss']:.0f} MB (load {loadavg()})"
        )

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the watcher exited")
        return json.loads(line)

    def arm(self, plan, prefix: str) -> None:
        self.process.stdin.write(f"watch {plan.pk} {prefix}\n")
        self.process.stdin.flush()
        self.read()

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- Measurements -----------------------------------------------------------------------

RESULTS: list[dict] = []


def measured(label: str, size: int, plan, action, watcher: Watcher | None, probe: str | None):
    """Run publish() or rollback() (`action`), timing it and its propagation."""
    from routing.tables import DatabaseRouteTable

    if watcher is not None and probe:
        watcher.arm(plan, probe)
    before = loadavg()
    started = time.monotonic()
    done = action()
    seconds = time.monotonic() - started
    committed = time.time()
    version = done.version
    result = {
        "size": size,
        "what": label,
        "version": version.number,
        "changes": version.added + version.removed + version.changed,
        "seconds": seconds,
        "load": f"{before} -> {loadavg()}",
    }
    if watcher is not None and probe:
        seen = watcher.read()
        if "timeout" in seen:
            result["propagation"] = "timeout"
        else:
            expected = signature(DatabaseRouteTable().routes(plan.pk, [probe], seen["version"]))
            result.update(
                new_after=seen["new_at"] - committed,
                new_from="memory" if seen["from_memory"] else "database",
                memory_after=seen.get("memory_at", float("nan")) - committed,
                consistent=seen["answer"] == expected and seen["version"] == version.number,
            )
        result["load"] = f"{before} -> {loadavg()}"
    RESULTS.append(result)
    print(describe(result), flush=True)
    plan.refresh_from_db()
    return done


def describe(r: dict) -> str:
    text = (
        f"{r['size']:>9,} {r['what']:<28} v{r['version']:<3} {r['changes']:>8,} changes "
        f"{r['seconds']:7.2f} s"
    )
    if "new_after" in r:
        text += (
            f" | new version answered after {r['new_after']:.3f} s (from {r['new_from']}), "
            f"in memory after {r['memory_after']:.2f} s, consistent {r['consistent']}"
        )
    elif "propagation" in r:
        text += f" | propagation {r['propagation']}"
    return f"{text} | load {r['load']}"


def bench_size(spec, size: int, watcher: Watcher | None, rng: random.Random, profile: bool):
    from versions.publishing import DRAFT, PublishRefused, diff, publish, rollback

    plan = ensure_plan(spec, size)
    try:  # a rollback leaves the draft as it was: start each run with draft == live
        publish(plan, comment="catch up with the draft")
        plan.refresh_from_db()
    except PublishRefused:
        pass
    routes = len(route_ids(plan))

    probe = edit_draft(plan, rng, changed=SMALL_CHANGE)
    measured("publish 10 changed", size, plan, lambda: publish(plan, comment="10"), watcher, probe)

    before_large = plan.published_version
    large = int(routes * LARGE_SHARE)
    probe = edit_draft(
        plan, rng, changed=large - large // 10, added=large // 20, removed=large // 20
    )
    before = loadavg()
    started = time.monotonic()
    found = diff(plan, before_large, DRAFT, limit=0)
    print(
        f"{size:>9,} diff(live, DRAFT) alone: {found.total:,} rows in "
        f"{time.monotonic() - started:.2f} s (load {before} -> {loadavg()})",
        flush=True,
    )
    action = lambda: publish(plan, comment="10%")  # noqa: E731
    if profile:
        profiler = cProfile.Profile()
        action = lambda: profiler.runcall(publish, plan, comment="10%")  # noqa: E731
    measured(f"publish {LARGE_SHARE:.0%} changed", size, plan, action, watcher, probe)
    if profile:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(25)

    path, probe = reimport_csv(spec, size, rng, plan.published_version)
    before = loadavg()
    seconds = import_csv(spec, size, path)
    print(
        f"{size:>9,} re-import with {REIMPORT_SHARE:.0%} changed: import_prefixes --replace "
        f"{seconds:.1f} s (load {before} -> {loadavg()})",
        flush=True,
    )
    measured(
        "publish re-import, 1% changed",
        size,
        plan,
        lambda: publish(plan, comment="re-import"),
        watcher,
        probe,
    )

    measured(
        f"rollback to v{before_large}",
        size,
        plan,
        lambda: rollback(plan, before_large),
        watcher,
        probe,
    )
    return plan


def bench_storage(spec, size: int, versions: int, rng: random.Random):
    from django.db import connection

    from versions.publishing import DRAFT, diff, publish

    plan = ensure_plan(spec, size)

    def storage() -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_total_relation_size('routing_publishedroute'), "
                "pg_relation_size('routing_publishedroute'), "
                "pg_indexes_size('routing_publishedroute'), "
                "(SELECT COUNT(*) FROM routing_publishedroute WHERE plan_id = %s), "
                "pg_total_relation_size('routing_dialprefix') + "
                "pg_total_relation_size('routing_routetarget')",
                [plan.pk],
            )
            total, heap, indexes, rows, draft = cursor.fetchone()
        mb = 1024 * 1024
        return (
            f"routing_publishedroute {total / mb:,.0f} MB (table {heap / mb:,.0f} MB, indexes "
            f"{indexes / mb:,.0f} MB), {rows:,} rows of this plan; the draft (dialprefix + "
            f"routetarget) {draft / mb:,.0f} MB"
        )

    first = plan.published_version
    print(f"storage at version {first}: {storage()}", flush=True)
    routes = len(route_ids(plan))
    each = int(routes * STORAGE_SHARE)
    began = time.monotonic()
    while plan.published_version < first + versions - 1:
        edit_draft(plan, rng, changed=each - each // 10, added=each // 20, removed=each // 20)
        before = loadavg()
        started = time.monotonic()
        done = publish(plan, comment="1%")
        plan.refresh_from_db()
        print(
            f"storage: v{done.version.number} ({done.diff.total:,} changes) "
            f"published in {time.monotonic() - started:.1f} s (load {before} -> {loadavg()})",
            flush=True,
        )
        if (plan.published_version - first) % 10 == 9:
            print(f"storage at version {plan.published_version}: {storage()}", flush=True)
    print(
        f"storage: {versions - 1} versions published in {time.monotonic() - began:.0f} s",
        flush=True,
    )
    print(f"storage at version {plan.published_version}: {storage()}", flush=True)
    for old, new in ((first, plan.published_version), (plan.published_version, DRAFT)):
        if new is DRAFT:
            edit_draft(plan, rng, changed=each - each // 10, added=each // 20, removed=each // 20)
        before = loadavg()
        started = time.monotonic()
        found = diff(plan, old, new, limit=1000)
        print(
            f"storage: diff(v{old}, {'DRAFT' if new is DRAFT else f'v{new}'}): "
            f"{found.added:,} added, {found.removed:,} removed, {found.changed:,} changed in "
            f"{time.monotonic() - started:.2f} s (load {before} -> {loadavg()})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--storage", type=int, default=0, help="Versions of the biggest plan.")
    parser.add_argument("--skip-publish", action="store_true", help="Storage only.")
    parser.add_argument("--profile", action="store_true", help="cProfile the large publish.")
    parser.add_argument("--watch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.watch:
        watch_main()
        return
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    print(machine())
    spec = setup(url)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(20)
    if not args.skip_publish:
        for size in sizes:
            ensure_plan(spec, size)
        watcher = Watcher()
        try:
            for size in sizes:
                bench_size(spec, size, watcher, rng, args.profile)
        finally:
            watcher.stop()
        print()
        for result in RESULTS:
            print(describe(result))
    if args.storage:
        bench_storage(spec, max(sizes), args.storage, rng)


if __name__ == "__main__":
    main()
