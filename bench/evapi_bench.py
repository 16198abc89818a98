"""EVAPI bridge: decisions/s and p50/p99 against a fake Kamailio keeping 64 events in flight.

    python -m bench.evapi_bench [--seconds 10] [--in-flight 64] [--workers 4]

This process plays Kamailio: it listens on 127.0.0.1 (a free port), starts
`manage.py run_evapi_bridge --connect` to it (ROUTING_TABLE=compiled), waits until
the bridge answers from its compiled table, then keeps exactly N routing events
outstanding (a new one is sent for every answer) for the given time, timing each
event from its send to its answer. Events carry a source IP of one of the
benchmark tenants and a number under one of their prefixes. Reports the bridge's
memory, and stops it.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from bench.common import machine, manage, memory_mb, setup_django, started, summary


def events(count: int) -> list[dict]:
    from bench.resolver_bench import sample_calls

    return [
        {
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
        for call in sample_calls(count)
    ]


class FakeKamailio:
    """Kamailio's side of one evapi connection, keeping `in_flight` events outstanding."""

    def __init__(self, sock: socket.socket, templates: list[dict]) -> None:
        self.sock = sock
        self.templates = templates
        self.label = 0
        self.sent: dict[int, float] = {}
        self.buffer = b""
        self.failures = 0

    def frame(self) -> bytes:
        self.label += 1
        event = dict(self.templates[self.label % len(self.templates)], tlabel=self.label)
        payload = json.dumps(event).encode()
        self.sent[self.label] = time.perf_counter()
        return b"%d:%s," % (len(payload), payload)

    def send(self, count: int) -> None:
        if count:
            self.sock.sendall(b"".join(self.frame() for _ in range(count)))

    def answers(self) -> list[float]:
        """Latencies of the answers that arrived with the next read."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("the bridge closed the connection")
        now = time.perf_counter()
        self.buffer += chunk
        latencies = []
        while True:
            length, sep, rest = self.buffer.partition(b":")
            if not sep or len(rest) <= int(length):
                break
            answer = json.loads(rest[: int(length)])
            self.buffer = rest[int(length) + 1 :]
            latencies.append(now - self.sent.pop(answer["xtra"]["tlabel"]))
            if not answer.get("success"):
                self.failures += answer.get("code", 500) >= 500
        return latencies

    def run(self, seconds: float, in_flight: int) -> tuple[list[float], float]:
        self.send(in_flight - len(self.sent))
        latencies: list[float] = []
        started_at = time.perf_counter()
        deadline = started_at + seconds
        while time.perf_counter() < deadline:
            got = self.answers()
            latencies.extend(got)
            self.send(len(got))
        elapsed = time.perf_counter() - started_at
        while self.sent:  # drain: every event gets its answer
            self.answers()
        return latencies, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4, help="The bridge's --workers.")
    parser.add_argument("--warmup-timeout", type=float, default=90.0)
    args = parser.parse_args()
    print(machine())
    setup_django()
    templates = events(5000)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(120)
    port = server.getsockname()[1]
    command = manage("run_evapi_bridge", "--connect", f"127.0.0.1:{port}")
    with started([*command, "--workers", str(args.workers), "--stats-interval", "0"]) as bridge:
        sock, _ = server.accept()
        sock.settimeout(30)
        kamailio = FakeKamailio(sock, templates)
        waited = time.monotonic()
        while True:  # until the compiled table answers: p50 under 2 ms for 1 s
            latencies, _ = kamailio.run(1.0, args.in_flight)
            latencies.sort()
            p50 = latencies[len(latencies) // 2] if latencies else 1.0
            print(f"  warming up: {len(latencies)} answers, p50 {p50 * 1000:.2f} ms")
            if p50 < 0.002 or time.monotonic() - waited > args.warmup_timeout:
                break
        print(f"bridge ({args.workers} workers) warmed up for {time.monotonic() - waited:.0f} s")
        latencies, elapsed = kamailio.run(args.seconds, args.in_flight)
        print(
            summary(f"EVAPI {args.in_flight} in flight", latencies, elapsed),
            f"engine failures {kamailio.failures}",
        )
        rss, peak = memory_mb(bridge.pid)
        print(f"bridge {bridge.pid}: RSS {rss:.0f} MB, peak {peak:.0f} MB")
        sock.close()
    server.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
