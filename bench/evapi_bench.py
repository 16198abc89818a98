"""EVAPI: decisions/s, p50/p99 and CPU per decision against a fake Kamailio.

    python -m bench.evapi_bench [--engines bridge,trivial] [--processes 2] [--seconds 10]
                                [--in-flight 1,64]

This process plays Kamailio: it listens on 127.0.0.1 (a free port) and starts the
engine, connected to it: `bridge` is `manage.py run_evapi_bridge --processes N`
(ROUTING_TABLE=compiled), `trivial` the fixed-answer engine of bench.trivial_engine
(the transport's own limit), N processes too. Like kamailio-evapi.cfg, it spreads
events over the connected engines (one connection per process, events dealt in
turn). It waits until the bridge answers from its compiled table, then for each
in-flight figure keeps exactly that many routing events outstanding (a new one for
every answer) for the given time, timing each event from its send to its answer.
Events carry a source IP of one of the benchmark tenants and a number under one of
their prefixes. CPU per decision is the engine processes' user+system time over
the run divided by the answers. Reports the engines' memory and stops them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import selectors
import socket
import sys
import time

from bench.common import (
    children,
    cpu_seconds,
    machine,
    manage,
    memory_mb,
    percentile,
    setup_django,
    started,
)

TLABEL = re.compile(rb'"tlabel":(\d+)')


def events(count: int) -> list[bytes]:
    """Routing event payloads, each with `"tlabel":` last, to be followed by a number."""
    from bench.resolver_bench import sample_calls

    found = []
    for call in sample_calls(count):
        event = {
            "event": "sip-routing",
            "tindex": 1,
            "caller": call.caller,
            "callee": call.callee,
            "source_ip": call.source_ip,
            "source_port": call.source_port,
            "account": call.account,
            "call_id": call.call_id,
            "from_uri": f"sip:{call.caller}@pbx.example.net",
        }
        found.append(json.dumps(event)[:-1].encode() + b',"tlabel":')
    return found


class FakeKamailio:
    """Kamailio's side of the engines' connections: events out, answers timed."""

    def __init__(self, sockets: list[socket.socket], templates: list[bytes]) -> None:
        self.sockets = sockets
        self.templates = templates
        self.label = 0
        self.sent: dict[int, float] = {}
        self.buffers = dict.fromkeys(sockets, b"")
        self.turn = 0
        self.failures = 0
        self.selector = selectors.DefaultSelector()
        for sock in sockets:
            self.selector.register(sock, selectors.EVENT_READ)

    def send(self, count: int) -> None:
        """`count` new events, dealt over the connections in turn."""
        frames: dict[socket.socket, list[bytes]] = {}
        now = time.perf_counter()
        for _ in range(count):
            self.label += 1
            payload = self.templates[self.label % len(self.templates)] + b"%d}" % self.label
            self.sent[self.label] = now
            sock = self.sockets[self.turn % len(self.sockets)]
            self.turn += 1
            frames.setdefault(sock, []).append(b"%d:%s," % (len(payload), payload))
        for sock, items in frames.items():
            sock.sendall(b"".join(items))

    def answers(self, timeout: float = 30.0) -> list[float]:
        """Latencies of the answers that arrived with the next reads."""
        latencies = []
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("an engine closed its connection")
            now = time.perf_counter()
            buffer = self.buffers[sock] + chunk
            while True:
                length, sep, rest = buffer.partition(b":")
                if not sep or len(rest) <= int(length):
                    break
                answer = rest[: int(length)]
                buffer = rest[int(length) + 1 :]
                label = int(TLABEL.search(answer).group(1))
                latencies.append(now - self.sent.pop(label))
                if b'"success":false' in answer and b'"code":5' in answer:
                    self.failures += 1
            self.buffers[sock] = buffer
        if not latencies and not self.selector.get_map():
            raise SystemExit("no engine connected")
        return latencies

    def run(self, seconds: float, in_flight: int) -> tuple[list[float], float]:
        self.send(in_flight - len(self.sent))
        latencies: list[float] = []
        started_at = time.perf_counter()
        deadline = started_at + seconds
        while time.perf_counter() < deadline:
            got = self.answers()
            if not got and self.sent:
                raise SystemExit(f"no answer within 30 s ({len(self.sent)} outstanding)")
            latencies.extend(got)
            self.send(len(got))
        elapsed = time.perf_counter() - started_at
        while self.sent:  # drain: every event gets its answer
            if not self.answers():
                raise SystemExit(f"{len(self.sent)} events never answered")
        return latencies, elapsed


def engine_commands(engine: str, port: int, processes: int) -> list[list[str]]:
    address = f"127.0.0.1:{port}"
    if engine == "bridge":
        return [[*manage("run_evapi_bridge", "--connect", address),
                 "--processes", str(processes), "--stats-interval", "0"]]  # fmt: skip
    if engine == "trivial":  # one asyncio process per connection, like the bridge's
        command = [sys.executable, "-m", "bench.trivial_engine", "--evapi", address,
                   "--routes", "192.0.2.10:5060,192.0.2.11:5060"]  # fmt: skip
        return [command] * processes
    raise SystemExit(f"unknown engine {engine!r}: bridge or trivial")


def measure(engine: str, args: argparse.Namespace, templates: list[bytes]) -> None:
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    server.settimeout(120)
    port = server.getsockname()[1]
    with contextlib.ExitStack() as stack:
        engines = [
            stack.enter_context(started(command))
            for command in engine_commands(engine, port, args.processes)
        ]
        sockets = []
        for _ in range(args.processes):
            sock, _ = server.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sockets.append(sock)
        kamailio = FakeKamailio(sockets, templates)
        waited = time.monotonic()
        while True:  # until the engine answers from memory: p50 under 1 ms for 1 s
            latencies, _ = kamailio.run(1.0, 8)
            latencies.sort()
            p50 = percentile(latencies, 0.5) if latencies else 1.0
            print(f"  warming up: {len(latencies)} answers, p50 {p50 * 1000:.2f} ms")
            if p50 < 0.001 or time.monotonic() - waited > args.warmup_timeout:
                break
        pids = [pid for process in engines for pid in (process.pid, *children(process.pid))]
        print(f"{engine}: {args.processes} processes, warmed up in "
              f"{time.monotonic() - waited:.0f} s, {machine()}")  # fmt: skip
        for in_flight in [int(n) for n in args.in_flight.split(",")]:
            before = cpu_seconds(pids)
            latencies, elapsed = kamailio.run(args.seconds, in_flight)
            cpu = cpu_seconds(pids) - before
            latencies.sort()
            print(
                f"  {engine} {in_flight:>3} in flight: "
                f"{len(latencies) / elapsed:,.0f} decisions/s, "
                f"p50 {percentile(latencies, 0.5) * 1000:.3f} ms, "
                f"p99 {percentile(latencies, 0.99) * 1000:.3f} ms, "
                f"{cpu / len(latencies) * 1000:.3f} ms CPU per decision, "
                f"engine failures {kamailio.failures}"
            )
        for pid in pids:
            rss, peak = memory_mb(pid)
            print(f"  {engine} process {pid}: RSS {rss:.0f} MB, peak {peak:.0f} MB")
        for sock in sockets:
            sock.close()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="bridge")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", default="1,64")
    parser.add_argument("--warmup-timeout", type=float, default=90.0)
    args = parser.parse_args()
    print(machine())
    setup_django()
    templates = events(5000)
    for engine in args.engines.split(","):
        measure(engine, args, templates)
    print(machine())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
