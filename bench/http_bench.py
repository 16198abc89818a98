"""HTTP endpoint under gunicorn: requests/s and p50/p99 at 1, 8 and 32 keep-alive clients.

    python -m bench.http_bench [--seconds 10] [--workers 2] [--clients 1,8,32]

Starts gunicorn as docs/operations.md documents (`gunicorn -c deploy/gunicorn.conf.py`,
WEB_CONCURRENCY workers, ROUTING_TABLE=compiled) on 127.0.0.1 and a free port,
creates a Kamailio token, waits until every worker answers from its compiled
table, then runs the load: each client is a thread holding one keep-alive
connection (http.client) and sending the next request as soon as the answer is
read; clients are spread over two load processes. Reports the memory of each
gunicorn process, and stops gunicorn.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from urllib.parse import quote

from bench.common import (
    children,
    free_port,
    machine,
    manage,
    memory_mb,
    server_env,
    setup_django,
    started,
    summary,
)

PATH = "/api/v1/kamailio/rtjson"


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


def client(port: int, key: str, payloads: list[bytes], until: float, offset: int, out: list):
    """One keep-alive connection: request after request until `until`."""
    headers = {"Content-Type": "application/json", "Authorization": f"Token {key}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    clock, n, errors = time.perf_counter, offset, 0
    latencies = []
    while time.monotonic() < until:
        body = payloads[n % len(payloads)]
        n += 7
        before = clock()
        conn.request("POST", PATH, body, headers)
        response = conn.getresponse()
        response.read()
        latencies.append(clock() - before)
        if response.status != 200:
            errors += 1
    conn.close()
    out.append((latencies, errors))


def load_process(port, key, payloads, threads, seconds, start_at, offset, queue) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    until = time.monotonic() + seconds
    out: list = []
    workers = [
        threading.Thread(target=client, args=(port, key, payloads, until, offset + i * 997, out))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(([x for lat, _ in out for x in lat], sum(e for _, e in out)))


def run_load(port: int, key: str, payloads: list[bytes], clients: int, seconds: float):
    """(latencies, errors, wall seconds) of `clients` concurrent keep-alive clients."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = min(clients, 2)
    start_at = time.time() + 0.5
    procs = [
        context.Process(
            target=load_process,
            args=(
                port,
                key,
                payloads,
                clients // processes + (i < clients % processes),
                seconds,
                start_at,
                i * 50_000,
                queue,
            ),
        )
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    return [x for lat, _ in results for x in lat], sum(e for _, e in results), seconds


def wait_until_compiled(port: int, key: str, payloads: list[bytes], timeout: float) -> float:
    """Seconds until 4 clients see p50 < 1.5 ms twice in a row (at most `timeout`)."""
    started_at = time.monotonic()
    good = 0
    while time.monotonic() - started_at < timeout:
        try:
            latencies, errors, _ = run_load(port, key, payloads, 4, 1.0)
        except (OSError, http.client.HTTPException):
            time.sleep(1)
            continue
        latencies.sort()
        p50 = latencies[len(latencies) // 2] if latencies else float("nan")
        print(f"  warming up: {len(latencies)} requests, p50 {p50 * 1000:.2f} ms, {errors} errors")
        if latencies and not errors and p50 < 0.0015:
            good += 1
            if good == 2:
                return time.monotonic() - started_at
        else:
            good = 0
    # The compiled tables are built within ~30 s per worker; past the timeout the
    # latency is the request path's own, not the build: measure it as it is.
    return time.monotonic() - started_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--warmup-timeout", type=float, default=90.0)
    args = parser.parse_args()
    print(machine())
    setup_django()
    payloads = bodies(5000)
    name = f"http-bench-{os.getpid()}"
    key = subprocess.run(
        manage("create_kamailio_token", name),
        env=server_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        run(args, key, payloads)
    finally:
        from api.models import KamailioToken

        KamailioToken.objects.filter(name=name).delete()


def run(args: argparse.Namespace, key: str, payloads: list[bytes]) -> None:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
    with started(
        [*command, "--bind", f"127.0.0.1:{port}"], WEB_CONCURRENCY=str(args.workers)
    ) as gunicorn:
        took = wait_until_compiled(port, key, payloads, args.warmup_timeout)
        print(f"gunicorn with {args.workers} sync workers, warmed up for {took:.0f} s")
        for clients in [int(c) for c in args.clients.split(",")]:
            latencies, errors, seconds = run_load(port, key, payloads, clients, args.seconds)
            print(summary(f"HTTP {clients:>2} clients", latencies, seconds), f"errors {errors}")
        for pid in [gunicorn.pid, *children(gunicorn.pid)]:
            rss, peak = memory_mb(pid)
            role = "master" if pid == gunicorn.pid else "worker"
            print(f"gunicorn {role} {pid}: RSS {rss:.0f} MB, peak {peak:.0f} MB")


if __name__ == "__main__":
    main()
