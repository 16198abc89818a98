"""The rtjson endpoint alone: requests/s, p50/p99 and CPU per request, at 1, 8 and 32 connections.

    python -m bench.http_bench [--servers granian,gunicorn] [--seconds 10] [--workers 2]
                               [--clients 1,8,32]

Starts each server on 127.0.0.1 and a free port: `granian` is the production call
path (`manage.py serve_rtjson`: granian, api.fastpath), `gunicorn` the sync gunicorn
of docs/operations.md before it (`gunicorn -c deploy/gunicorn.conf.py config.wsgi_rtjson`),
`gthread` the same with gunicorn's threaded worker (4 threads, keep-alive),
`trivial` the fixed-answer engine of bench.trivial_engine (the server's own limit),
each with ROUTING_TABLE=compiled and `--workers` processes. Creates a Kamailio token,
waits until the workers answer from their compiled tables, then loads it with wrk
(keep-alive connections, each sending its next request when the answer is read)
with Kamailio's request bodies for 5,000 random customers' calls. CPU per request is
the server processes' user+system time over the run divided by the requests. Stops
every server it started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

from bench.common import (
    ROOT,
    children,
    cpu_seconds,
    free_port,
    machine,
    manage,
    memory_mb,
    server_env,
    setup_django,
    started,
)

PATH = "/api/v1/kamailio/rtjson"
# The trivial engine's fixed answer: two serial routes, like a routed bench call's.
TRIVIAL_ROUTES = "192.0.2.10:5060,192.0.2.11:5060"


def bodies(count: int) -> list[bytes]:
    """Request bodies as Kamailio's http_async_client sends them, for random calls."""
    from bench.resolver_bench import sample_calls

    found = []
    for n, call in enumerate(sample_calls(count)):
        found.append(
            json.dumps(
                {
                    "event": "sip-routing",
                    "source_ip": call.source_ip,
                    "source_port": call.source_port,
                    "account": call.account,
                    "call_id": f"http-bench-{n}",
                    "from_name": "",
                    "from_uri": f"sip:{call.caller}@pbx.example.net",
                    "from_tag": "f1",
                    "to_name": "",
                    "to_uri": f"sip:{quote(call.callee, safe='+')}@carrier.example.net",
                    "to_tag": "",
                    "ruri": f"sip:{quote(call.callee, safe='+')}@carrier.example.net",
                }
            ).encode()
        )
    return found


def server_command(server: str, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    bind = f"127.0.0.1:{port}"
    if server == "granian":
        return manage("serve_rtjson", "--bind", bind, "--workers", str(workers)), {}
    if server == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
        return [*command, "config.wsgi_rtjson", "--bind", bind], {"WEB_CONCURRENCY": str(workers)}
    if server == "gthread":  # gunicorn's threaded worker: it keeps connections alive
        command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
        return [*command, "config.wsgi_rtjson", "--bind", bind, "-k", "gthread",
                "--threads", "4"], {"WEB_CONCURRENCY": str(workers)}  # fmt: skip
    if server == "trivial":
        return [sys.executable, "-m", "bench.trivial_engine", "--http", bind,
                "--routes", TRIVIAL_ROUTES], {}  # fmt: skip
    raise SystemExit(f"unknown server {server!r}: granian, gunicorn, gthread or trivial")


def wrk(port: int, clients: int, seconds: float, bodies_file: str, key: str) -> dict:
    """One wrk run: requests, requests/s, p50/p99 (s), errors (non-2xx, socket errors)."""
    done = subprocess.run(
        ["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds:g}s", "--latency",
         "-s", str(ROOT / "bench" / "rtjson.lua"), f"http://127.0.0.1:{port}{PATH}",
         "--", bodies_file, key],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    )  # fmt: skip
    out = done.stdout
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
        return float(value) * units[unit]

    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out)) + sum(
        int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)
    )
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50%"),
        "p99": latency("99%"),
        "errors": errors,
    }


def warm_up(process, port: int, bodies_file: str, key: str, timeout: float) -> float:
    """Seconds until 4 connections see p50 < 1 ms twice in a row (at most `timeout`)."""
    began = time.monotonic()
    good = 0
    while time.monotonic() - began < timeout:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            run = wrk(port, 4, 1, bodies_file, key)
        except (subprocess.CalledProcessError, AttributeError):
            time.sleep(1)  # not listening yet, or no answer at all
            continue
        print(f"  warming up: {run['requests']} requests, p50 {run['p50'] * 1000:.2f} ms, "
              f"{run['errors']} errors")  # fmt: skip
        if run["requests"] and not run["errors"] and run["p50"] < 0.001:
            good += 1
            if good == 2:
                break
        else:
            good = 0
    return time.monotonic() - began


def measure(server: str, args: argparse.Namespace, bodies_file: str, key: str) -> None:
    port = free_port()
    command, env = server_command(server, port, args.workers)
    with started(command, **env) as process:
        took = warm_up(process, port, bodies_file, key, args.warmup_timeout)
        pids = [process.pid, *children(process.pid)]
        print(f"{server}: {args.workers} workers, warmed up in {took:.0f} s, {machine()}")
        for clients in [int(c) for c in args.clients.split(",")]:
            before = cpu_seconds(pids)
            run = wrk(port, clients, args.seconds, bodies_file, key)
            cpu = cpu_seconds(pids) - before
            per_request = cpu / run["requests"] * 1000 if run["requests"] else float("nan")
            print(
                f"  {server} {clients:>2} connections: {run['rate']:,.0f} requests/s, "
                f"p50 {run['p50'] * 1000:.3f} ms, p99 {run['p99'] * 1000:.3f} ms, "
                f"{per_request:.3f} ms CPU per request, errors {run['errors']}"
            )
        for pid in pids:
            rss, peak = memory_mb(pid)
            print(f"  {server} process {pid}: RSS {rss:.0f} MB, peak {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="granian,gunicorn")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--warmup-timeout", type=float, default=90.0)
    args = parser.parse_args()
    print(machine())
    setup_django()
    name = f"http-bench-{os.getpid()}"
    key = subprocess.run(
        manage("create_kamailio_token", name),
        env=server_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as file:
            file.write(b"\n".join(bodies(5000)) + b"\n")
            file.flush()
            for server in args.servers.split(","):
                measure(server, args, file.name, key)
    finally:
        from api.models import KamailioToken

        KamailioToken.objects.filter(name=name).delete()
    print(machine())


if __name__ == "__main__":
    main()
