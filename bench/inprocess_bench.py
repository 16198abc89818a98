"""The in-process engine (kamailio.inprocess) on the benchmark table: memory per worker.

    python -m bench.inprocess_bench [--workers 4] [--calls 20000]

Kamailio's KEMI config in "inprocess" mode runs the resolver in every SIP worker.
What that costs is measured here the way Kamailio does it (fork after the script's
mod_init), without Kamailio, so each figure is the engine's own:

- per worker: each of --workers forked children loads the table itself
  (`inprocess.start()`, what a worker does without ENGINE_PRELOAD): load time, and
  its memory after --calls answers: RSS, and PSS/USS (/proc/PID/smaps_rollup: its
  share of pages shared with others, and the pages only it has);
- preloaded: the parent loads once (`inprocess.preload()`, mod_init), then forks
  --workers children that adopt it (`inprocess.start()`) and answer --calls each:
  the same figures, so the pages left shared show;
- `Engine.answer()` latency (fields in, rtjson text out) in the preloaded workers:
  p50/p99, and how often the upkeep (the change-log poll, every 0.2 s) ran.

The calls are resolver_bench's customers' calls, as the fields Kamailio sends.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.common import machine, percentile, setup_django


def fields_of(request) -> dict:
    """The fields the KEMI script sends for this call (route[ENGINE_REQUEST]'s)."""
    body = {
        "event": "sip-routing",
        "source_ip": request.source_ip,
        "source_port": request.source_port,
        "call_id": f"bench-{id(request)}",
        "from_uri": f"sip:{request.caller or 'anonymous'}@pbx.example.net",
        "to_uri": f"sip:{request.callee}@sbc.example.net",
        "ruri": f"sip:{request.callee}@sbc.example.net",
        "callee": request.callee,
        "caller": request.caller or None,
    }
    if request.account:
        body["account"] = request.account
    return {name: value for name, value in body.items() if value is not None}


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) of a process in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0]) / 1024
    uss = values.get("Private_Clean", 0.0) + values.get("Private_Dirty", 0.0)
    return {"rss": values.get("Rss", 0.0), "pss": values.get("Pss", 0.0), "uss": uss}


def worker(calls: list[dict], write: int, *, preloaded: bool) -> None:
    """A forked child: adopt or load the engine, answer every call, report."""
    from kamailio import inprocess

    started = time.perf_counter()
    engine = inprocess.start(warm_up=600)
    loaded = time.perf_counter() - started
    latencies, failures = [], 0
    for body in calls:
        began = time.perf_counter()
        answer = engine.answer(body)
        latencies.append(time.perf_counter() - began)
        if '"code":5' in answer:  # 5xx: the engine failed (a 404 or 403 is an answer)
            failures += 1
    report = {
        "pid": os.getpid(),
        "loaded_s": loaded,
        "latencies": sorted(latencies),
        "failures": failures,
        "memory": memory(os.getpid()),
        "preloaded": preloaded,
    }
    os.write(write, json.dumps(report).encode())


def run_workers(count: int, calls: list[dict], *, preloaded: bool) -> list[dict]:
    """Fork `count` workers at once (as Kamailio does); each reports when done. They
    are stopped only once all have reported, so each one's PSS counts the others."""
    children = []
    for _ in range(count):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            code = 1
            try:
                worker(calls, write, preloaded=preloaded)
                os.close(write)
                # Stay alive (sharing pages) until the parent has read everyone's figures.
                time.sleep(3600)
            finally:
                os._exit(code)
        os.close(write)
        children.append((pid, read))
    reports = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            data = b""
            while chunk := pipe.read(1 << 16):
                data += chunk
        report = json.loads(data)
        report["memory"] = memory(pid)  # again, with every worker alive
        reports.append(report)
    for pid, _ in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return reports


def describe(label: str, reports: list[dict]) -> None:
    rss = [r["memory"]["rss"] for r in reports]
    pss = [r["memory"]["pss"] for r in reports]
    uss = [r["memory"]["uss"] for r in reports]
    loaded = [r["loaded_s"] for r in reports]
    latencies = sorted(x for r in reports for x in r["latencies"])
    failures = sum(r["failures"] for r in reports)
    print(
        f"{label}: {len(reports)} workers; start {min(loaded):.1f}-{max(loaded):.1f} s; "
        f"per worker RSS {sum(rss) / len(rss):.0f} MB, PSS {sum(pss) / len(pss):.0f} MB, "
        f"USS {sum(uss) / len(uss):.0f} MB (all workers: PSS {sum(pss):.0f} MB); "
        f"answer p50 {percentile(latencies, 0.5) * 1000:.3f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.3f} ms over {len(latencies)}; "
        f"{failures} engine failures"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--calls", type=int, default=20000, help="Calls per worker.")
    args = parser.parse_args()
    os.environ.setdefault("ROUTING_TABLE", "compiled")
    setup_django()
    print(machine())
    from django.db import connections

    from bench.resolver_bench import customer_calls

    calls = [fields_of(call.request) for call in customer_calls(min(args.calls, 20000))]
    calls = (calls * (args.calls // len(calls) + 1))[: args.calls]
    connections.close_all()  # nothing open across the forks
    print(f"{len(calls)} calls per worker, load {os.getloadavg()[0]:.2f}")
    describe("each worker loads", run_workers(args.workers, calls, preloaded=False))

    from kamailio import inprocess

    started = time.perf_counter()
    still = inprocess.preload(warm_up=600)
    print(
        f"preloaded in {time.perf_counter() - started:.1f} s (still loading: {still or 'none'}); "
        f"main process {memory(os.getpid())['rss']:.0f} MB RSS"
    )
    describe("preloaded", run_workers(args.workers, calls, preloaded=True))
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
