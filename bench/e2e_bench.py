"""End to end: SIPp through the shipped Kamailio configs, this engine against a trivial one.

    python -m bench.e2e_bench [--paths evapi,http-async] [--rates 250,500,750,1000,...]
        [--seconds 10] [--latency-rate 300] [--latency-seconds 10]
        [--kamailio-modules DIR] [--bridge-processes 1] [--http-workers 2]

For each path (`evapi`: kamailio-evapi.cfg and `manage.py run_evapi_bridge`;
`evapi-nosip`: the same WITH_NOSIP, both engines answering by UDP datagram to
Kamailio's SIP port;
`http-async`: kamailio-http.cfg with http_async_client and the engine's HTTP server;
`http`: the same with http_client), everything on 127.0.0.1 and free ports:

- two SIPp carriers, one answering every INVITE 503 and one 200
  (tests/e2e/scenarios/carrier_reject.xml, carrier_answer.xml), shared by every run;
- two Kamailios from the shipped config, one asking bench/trivial_engine.py (a
  fixed answer: the real engine's answer for one bench call, so both route alike)
  and one asking this engine (production settings, ROUTING_TABLE=compiled, the
  bench database with its 1,000,000 prefixes, plus a tenant of the bench's own,
  `sipp-bench`, calls from 127.0.0.1/32, 10,000 prefixes routing serially to the
  two carriers: every call fails over, 503 then 200);
- a SIPp caller (tests/e2e/scenarios/caller.xml with the number from an injection
  file of 3,000 numbers under the tenant's prefixes, one per call in turn).

Clean calls/s: at each rate step (calls = rate x --seconds), the trivial engine,
then this engine, each through its own Kamailio; a step is clean when every call
got its 200, none failed and the caller retransmitted no INVITE (SIPp's own
counters: -trace_stat and the INVITE row of -trace_screen). An engine stops
stepping at its first unclean step; its clean rate is its highest clean step.

Decision latency (measured first, after the warm-up, while both chains are fresh):
at --latency-rate for --latency-seconds, tcpdump on lo captures
Kamailio's SIP port; per Call-ID, the first INVITE in (from the caller) and the
first INVITE out (to the first carrier): the decision (request built, engine asked,
answer applied, branch sent) is between the two. p50/p99 for both engines and the
difference, which is what this engine adds over a trivial one.

CPU: utime+stime (/proc/PID/stat) of every process of the engine, of Kamailio and
of the SIPp caller over each step, per call and as a share of one core.

Outcome events: over EVAPI they go to the engine on the same connection (the
bridge ingests them into the database; the trivial engine drops them); over HTTP
both Kamailios POST them to a separate sink (one more trivial_engine answering
202), as production sends them to the API's own server.

Every process is stopped at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ROOT, machine, manage, percentile, server_env, setup_django
from tests.e2e.processes import (
    HOST,
    Process,
    ProcessError,
    ProcessGroup,
    free_port,
    is_free,
    sip_options_answered,
    tcp_accepts,
)

SCENARIOS = ROOT / "tests" / "e2e" / "scenarios"
CONFIGS = {
    "http": ROOT / "deploy" / "kamailio" / "kamailio-http.cfg",
    "http-async": ROOT / "deploy" / "kamailio" / "kamailio-http.cfg",
    "evapi": ROOT / "deploy" / "kamailio" / "kamailio-evapi.cfg",
    # The same, answers by nosip datagrams to Kamailio's SIP port (WITH_NOSIP; both
    # engines get --nosip), resumed by the SIP workers instead of the EVAPI dispatcher.
    "evapi-nosip": ROOT / "deploy" / "kamailio" / "kamailio-evapi.cfg",
    # The KEMI (Python) config asking over EVAPI, and deciding in Kamailio's own SIP
    # workers (ENGINE_MODE_INPROCESS: kamailio.inprocess preloaded before the fork; the
    # trivial one is bench/trivial_inprocess.py, a fixed answer).
    "kemi-evapi": ROOT / "deploy" / "kamailio" / "kamailio-kemi.cfg",
    "kemi-inprocess": ROOT / "deploy" / "kamailio" / "kamailio-kemi.cfg",
}
# Where the in-process engine's packages are (this interpreter's site-packages).
SITE_PACKAGES = ":".join(p for p in sys.path if p.endswith("site-packages"))
TENANT = "sipp-bench"
CARRIER = "SIPp carriers"
PREFIXES = 10_000
NUMBERS = 3_000
CALLER = "3312"
HOLD_MS = 500
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The two SIPp carriers' pids (shared by every run), for their CPU.
CARRIER_PIDS: list[int] = []


# --- The commands of this project's engine (one place each, to swap them) ----------------


def engine_http_command(port: int, workers: int) -> list[str]:
    """The production HTTP server for Kamailio's rtjson requests."""
    return [sys.executable, "manage.py", "serve_rtjson", "--bind", f"{HOST}:{port}",
            "--workers", str(workers)]  # fmt: skip


def engine_evapi_command(evapi_port: int, processes: int, nosip: int | None = None) -> list[str]:
    """The EVAPI bridge connected to one Kamailio (answering by nosip to port `nosip`)."""
    command = manage(
        "run_evapi_bridge", "--connect", f"{HOST}:{evapi_port}", "--stats-interval", "0"
    )
    if nosip is not None:
        command += ["--nosip", f"{HOST}:{nosip}"]
    if processes > 1:  # several bridge processes, each with its own connection
        command += ["--processes", str(processes)]
    return command


def trivial_command(path: str, where: str, answer: Path, *options: str) -> list[str]:
    mode = "--evapi" if "evapi" in path else "--http"
    return [
        sys.executable, "-m", "bench.trivial_engine", mode, where, "--answer", str(answer), *options
    ]  # fmt: skip


def engine_env() -> dict[str, str]:
    """Production settings on the bench database (bench.common.server_env), INFO logs."""
    return server_env(
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        ROUTING_TABLE="compiled",
    )


# --- The bench's own tenant in the bench database ----------------------------------------


@dataclass
class Table:
    plan_id: int
    numbers: list[str]
    answer: dict


def bench_prefixes() -> tuple[list[str], list[str]]:
    """10,000 prefixes (3-7 digits, deterministic) and numbers under them."""
    rng = random.Random(20261130)
    prefixes: set[str] = set()
    while len(prefixes) < PREFIXES:
        prefixes.add(
            str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=rng.randint(2, 6)))
        )
    ordered = sorted(prefixes)
    numbers = []
    for _ in range(NUMBERS):
        prefix = rng.choice(ordered)
        numbers.append(prefix + "".join(rng.choices("0123456789", k=12 - len(prefix))))
    return ordered, numbers


def ensure_table(first_port: int, second_port: int, directory: Path) -> Table:
    """Tenant `sipp-bench` (127.0.0.1/32), its carrier, two trunks to the SIPp carriers
    (ports updated), and its plan "Default" with 10,000 prefixes routing serially to
    trunk "first" (503) then "second" (200). Idempotent: the prefixes are imported
    only when the plan does not hold exactly them. The real engine's answer for one
    bench call is the trivial engine's fixed answer."""
    from kamailio.requests import call_request_from_fields
    from kamailio.rtjson import to_rtjson
    from routing import health
    from routing.models import Carrier, DialPrefix, RoutingPlan, Trunk, TrunkHealth
    from routing.service import decide
    from routing.services import save_row
    from routing.tables import DatabaseRouteTable
    from tenants.models import Tenant, TenantSource

    tenant = Tenant.objects.filter(slug=TENANT).first()
    if tenant is None:
        tenant = Tenant(slug=TENANT, name="SIPp bench (bench/e2e_bench.py)")
        save_row(user=None, row=tenant)
    source, _ = TenantSource.objects.get_or_create(
        network="127.0.0.1/32", defaults={"tenant": tenant}
    )
    if source.tenant_id != tenant.pk:
        raise SystemExit(f"127.0.0.1/32 belongs to tenant {source.tenant}, not {TENANT}")
    carrier, _ = Carrier.objects.get_or_create(tenant=tenant, name=CARRIER)
    for name, port in (("first", first_port), ("second", second_port)):
        trunk = Trunk.objects.filter(carrier=carrier, name=name).first() or Trunk(
            carrier=carrier, name=name, transport="udp"
        )
        if trunk.pk is None or (trunk.host, trunk.port) != (HOST, port):
            trunk.host, trunk.port = HOST, port
            save_row(user=None, row=trunk)
        # The first carrier answers 503 to every call: without the override its health
        # policy would take it out of routing after 5 calls, and the engine's calls would
        # skip the failover the trivial engine's calls make.
        row = TrunkHealth.objects.filter(trunk=trunk).first()
        if row is None or row.override != "up":
            health.override(trunk, "up", None, "bench/e2e_bench.py: a carrier that always fails")
    plan = RoutingPlan.objects.get(tenant=tenant, name="Default")
    prefixes, numbers = bench_prefixes()
    have = set(DialPrefix.objects.filter(plan=plan).values_list("prefix", flat=True))
    if have != set(prefixes):
        csv_path = directory / "sipp-bench-prefixes.csv"
        targets = f"{CARRIER}/first:1:100|{CARRIER}/second:2:100"
        csv_path.write_text(
            "prefix,action,routing_mode,targets,description\n"
            + "".join(f"{p},route,serial,{targets},e2e bench\n" for p in prefixes)
        )
        started = time.monotonic()
        command = manage("import_prefixes", str(csv_path), "--tenant", TENANT, "--plan", "Default")
        subprocess.run(
            [*command, "--replace", "--yes", "--no-progress"],
            cwd=ROOT,
            env=server_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(
            f"{TENANT}: {len(prefixes):,} prefixes imported in {time.monotonic() - started:.1f} s"
        )
    fields = {
        "source_ip": HOST, "source_port": 5060, "call_id": "e2e-bench-answer",
        "from_uri": f"sip:{CALLER}@{HOST}", "ruri": f"sip:{numbers[0]}@{HOST}",
        "caller": CALLER, "callee": numbers[0],
    }  # fmt: skip
    decision = decide(call_request_from_fields(fields), table=DatabaseRouteTable())
    answer = to_rtjson(decision)
    ports = [r["uri"].rsplit(":", 1)[-1].split(";")[0] for r in answer.get("routes", [])]
    if not decision.success or ports != [str(first_port), str(second_port)]:
        raise SystemExit(f"the engine does not route the bench calls as expected: {answer}")
    return Table(plan.pk, numbers, answer)


# --- Processes ---------------------------------------------------------------------------


def group_pids(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(p) for p in (task / "children").read_text().split()]
    return found


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process, in seconds."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return found


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_pid(pids).values())


def runqueue_seconds(pids: list[int]) -> float:
    """Time these processes spent runnable but waiting for a CPU (/proc/PID/schedstat)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
    return total / 1e9


@dataclass
class Kamailio:
    path: str
    port: int
    process: Process
    evapi_port: int | None = None


def start_kamailio(
    processes: ProcessGroup,
    path: str,
    name: str,
    args: argparse.Namespace,
    env_extra: dict[str, str] | None = None,
    **defines,
) -> Kamailio:
    run_dir = tempfile.mkdtemp(prefix="kam-", dir=processes.directory)
    port = free_port()
    values: dict[str, str | int] = {
        "LISTEN_PORT": port,
        "RUN_DIR": run_dir,
        "CTL_SOCKET": f"unix:{run_dir}/ctl",
        "SIP_WORKERS": args.sip_workers,
        "LOG_LEVEL": args.kamailio_log_level,
    }
    evapi_port = None
    env = {**os.environ, **(env_extra or {})}
    if path.startswith("kemi"):
        values["KEMI_SCRIPT"] = str(CONFIGS[path].parent / "kemi_routing.py")
    if "evapi" in path:
        evapi_port = free_port()
        values["EVAPI_BIND"] = f"{HOST}:{evapi_port}"
        if path == "evapi-nosip":
            values["WITH_NOSIP"] = 1
        if path == "kemi-evapi":
            values["ENGINE_MODE_EVAPI"] = 1
    elif path == "kemi-inprocess":
        values["ENGINE_MODE_INPROCESS"] = 1
        values["ENGINE_PROJECT_DIR"] = str(ROOT)
        values["ENGINE_PYTHONPATH"] = SITE_PACKAGES
        env.update(engine_env())  # the engine's settings, in Kamailio's environment
    elif path == "http-async":
        values["MODULES_DIR"] = args.kamailio_modules
    values.update(defines)
    argv = ["kamailio", "-f", str(CONFIGS[path]), "-DD", "-E", "-m", str(args.shm_mb), "-M", "32",
            "-Y", run_dir, "-w", run_dir]  # fmt: skip
    if path == "http":
        argv += ["-A", "WITH_HTTP_CLIENT"]
    for key, value in values.items():
        if key == "ENGINE_TOKEN":
            env["KAMAILIO_ENGINE_TOKEN"] = str(value)  # from the environment, as in production
            argv += ["-A", "ENGINE_TOKEN_FROM_ENV=1"]
            continue
        argv += ["-A", f'{key}="{value}"' if isinstance(value, str) else f"{key}={value}"]
    process = processes.start(name, argv, cwd=run_dir, env=env)
    # In-process, Kamailio loads the whole table before it forks (about 20 s at 1M).
    wait = 180.0 if path == "kemi-inprocess" else 20.0
    process.wait_until(
        lambda: sip_options_answered(port), what=f"{name} answering OPTIONS", timeout=wait
    )
    return Kamailio(path, port, process, evapi_port)


def sipp_base(port: int | None = None) -> list[str]:
    return [
        "sipp", "-i", HOST, "-p", str(port or free_port()), "-mi", HOST,
        "-mp", str(free_port(span=4)), "-ci", HOST, "-cp", str(free_port()), "-nostdin",
    ]  # fmt: skip


def start_carrier(processes: ProcessGroup, scenario: str, name: str) -> int:
    argv = sipp_base()
    port = int(argv[argv.index("-p") + 1])
    process = processes.start(name, [*argv, "-sf", str(SCENARIOS / f"{scenario}.xml")])
    process.wait_until(lambda: not is_free(port), what=f"{name} listening on {port}")
    CARRIER_PIDS.append(process.popen.pid)
    return port


@dataclass
class Engine:
    """One engine (trivial or this one) with its own Kamailio."""

    label: str
    kamailio: Kamailio
    process: Process
    ready: Callable[[], None] = field(default=lambda: None)

    def pids(self) -> list[int]:
        return group_pids(self.process.popen.pid)


# --- A SIPp run --------------------------------------------------------------------------


@dataclass
class Run:
    engine: str
    rate: int
    calls: int
    answered: int  # the INVITE's 200 received
    rejected: int  # another final reply (a 503 when the engine fails, say)
    failed: int  # SIPp's failed calls (timeouts, unexpected messages)
    invite_retrans: int
    retrans: int
    seconds: float
    returncode: int
    engine_cpu: float
    kamailio_cpu: float
    kamailio_busiest: float  # the busiest Kamailio process (one core at most)
    kamailio_waited: float  # runnable but waiting for a CPU, all its processes
    caller_cpu: float
    carriers_cpu: float
    note: str = ""

    @property
    def clean(self) -> bool:
        return (
            self.answered == self.calls
            and self.rejected == 0
            and self.failed == 0
            and self.invite_retrans == 0
            and self.returncode == 0
        )

    def line(self) -> str:
        per_call = self.engine_cpu / self.calls * 1000 if self.calls else float("nan")
        share = 100 / self.seconds if self.seconds else float("nan")
        return (
            f"{self.engine:>8} {self.rate:>5}/s: {self.answered:>6,}/{self.calls:,} answered, "
            f"{self.rejected} rejected, {self.failed} failed, {self.invite_retrans} INVITE "
            f"retrans ({self.retrans} all), {self.seconds:5.1f} s, "
            f"{'clean' if self.clean else 'UNCLEAN'}; CPU: engine {per_call:.3f} ms/call "
            f"({self.engine_cpu * share:.0f}% of a core), "
            f"Kamailio {self.kamailio_cpu * share:.0f}% "
            f"(busiest process {self.kamailio_busiest * share:.0f}%, waited for a CPU "
            f"{self.kamailio_waited * share:.0f}%), "
            f"caller {self.caller_cpu * share:.0f}%, carriers {self.carriers_cpu * share:.0f}%"
            + (f" [{self.note}]" if self.note else "")
        )


def caller_scenario(directory: Path) -> Path:
    """tests/e2e/scenarios/caller.xml with the called number from the injection file."""
    text = (SCENARIOS / "caller.xml").read_text().replace("[service]", "[field0]")
    path = directory / "caller-numbers.xml"
    path.write_text(text)
    return path


def sipp_stats(stat_file: Path) -> dict[str, str]:
    """The last line of SIPp's -trace_stat file, by column."""
    with contextlib.suppress(OSError):
        lines = [line for line in stat_file.read_text(errors="replace").splitlines() if line]
        if len(lines) >= 2:
            return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
    return {}


@dataclass
class Screen:
    """The caller's counters from SIPp's final scenario screen (-trace_screen)."""

    invite_retrans: int
    answered: int
    rejected: int


def read_screen(screen_file: Path) -> Screen | None:
    """The INVITE row's retransmissions, the INVITE's 200s and its other finals.

    The rows follow caller.xml: INVITE, the provisional replies, the 200, the error
    codes, then the ACK (the BYE's 200 comes after it and is not counted).
    """
    invite, answered, rejected = None, None, 0
    with contextlib.suppress(OSError):
        for line in screen_file.read_text(errors="replace").splitlines():
            row = re.match(r"\s*(INVITE|ACK|\d{3})\s+(?:-+>|<-+)\s+(\d+)\s+(\d+)", line)
            if row is None:
                continue
            name, count, retrans = row[1], int(row[2]), int(row[3])
            if name == "INVITE" and invite is None:
                invite = retrans
            elif name == "ACK":
                break
            elif name == "200" and answered is None:
                answered = count
            elif name.isdigit() and int(name) >= 300:
                rejected += count
    if invite is None or answered is None:
        return None
    return Screen(invite, answered, rejected)


def run_calls(
    processes: ProcessGroup, engine: Engine, rate: int, calls: int, scenario: Path, numbers: Path
) -> Run:
    directory = processes.directory
    tag = f"{engine.label}-{engine.kamailio.path}-{rate}-{time.monotonic_ns()}"
    stat_file, screen_file = directory / f"{tag}.csv", directory / f"{tag}.screen"
    argv = [
        *sipp_base(), f"{HOST}:{engine.kamailio.port}", "-sf", str(scenario), "-inf", str(numbers),
        "-m", str(calls), "-r", str(rate), "-l", str(max(rate * 5, 100)), "-d", str(HOLD_MS),
        "-pause_msg_ign", "-recv_timeout", "5000", "-timeout", f"{calls // rate + 30}s",
        "-key", "caller", CALLER, "-key", "caller_name", "Bench",
        "-trace_stat", "-stf", str(stat_file), "-fd", "1",
        "-trace_screen", "-screen_file", str(screen_file),
    ]  # fmt: skip
    engine_pids, kamailio_pids = engine.pids(), group_pids(engine.kamailio.process.popen.pid)
    before = cpu_seconds(engine_pids), cpu_seconds(kamailio_pids), cpu_seconds(CARRIER_PIDS)
    kamailio_before = cpu_by_pid(kamailio_pids)
    waited_before = runqueue_seconds(kamailio_pids)
    started = time.monotonic()
    caller = processes.start(f"caller-{tag}", argv, cwd=directory)
    limit = calls / rate + 40
    caller_cpu = 0.0
    note = ""
    while caller.running and time.monotonic() - started < limit:
        caller_cpu = cpu_seconds([caller.popen.pid]) or caller_cpu
        time.sleep(0.2)
    if caller.running:
        note = f"caller killed after {limit:.0f} s"
    caller.stop()
    seconds = time.monotonic() - started
    after = cpu_seconds(engine_pids), cpu_seconds(kamailio_pids), cpu_seconds(CARRIER_PIDS)
    kamailio_after = cpu_by_pid(kamailio_pids)
    waited = runqueue_seconds(kamailio_pids) - waited_before
    busiest = max(
        (kamailio_after[pid] - kamailio_before.get(pid, 0.0) for pid in kamailio_after), default=0.0
    )
    processes.processes.remove(caller)
    stats = sipp_stats(stat_file)
    screen = read_screen(screen_file)
    if screen is None:
        note = (note + "; " if note else "") + "no scenario screen from SIPp"
        screen = Screen(-1, 0, 0)
    return Run(
        engine=engine.label,
        rate=rate,
        calls=calls,
        answered=screen.answered,
        rejected=screen.rejected,
        failed=int(stats.get("FailedCall(C)", 0) or 0),
        invite_retrans=screen.invite_retrans,
        retrans=int(stats.get("Retransmissions(C)", 0) or 0),
        seconds=seconds,
        returncode=caller.popen.returncode if caller.popen.returncode is not None else -1,
        engine_cpu=after[0] - before[0],
        kamailio_cpu=after[1] - before[1],
        kamailio_busiest=busiest,
        kamailio_waited=waited,
        caller_cpu=caller_cpu,
        carriers_cpu=after[2] - before[2],
        note=note,
    )


# --- Decision latency from a packet capture -----------------------------------------------


LINK_HEADER = {0: 4, 1: 14, 113: 16, 276: 20}
CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)\s*:\s*([^\r\n]+)", re.IGNORECASE)


def decision_latencies(pcap: Path, kamailio_port: int, carrier_port: int) -> list[float]:
    """Per Call-ID, first INVITE out to the carrier minus first INVITE in (seconds)."""
    data = pcap.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    link = struct.unpack(endian + "I", data[20:24])[0]
    skip = LINK_HEADER[link]
    arrived: dict[bytes, float] = {}
    left: dict[bytes, float] = {}
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
        packet = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        at = seconds + fraction / (1e9 if nano else 1e6)
        ip = packet[skip:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 15) * 4 :]
        source, destination = struct.unpack("!HH", udp[:4])
        sip = udp[8:]
        if not sip.startswith(b"INVITE "):
            continue
        match = CALL_ID.search(sip)
        if match is None:
            continue
        call_id = match[1].strip()
        if destination == kamailio_port:
            arrived.setdefault(call_id, at)
        elif source == kamailio_port and destination == carrier_port:
            left.setdefault(call_id, at)
    return [left[c] - arrived[c] for c in left if c in arrived]


def measure_latency(
    processes: ProcessGroup, engine: Engine, args, carrier_port: int, scenario, numbers
) -> tuple[list[float], Run, str]:
    pcap = processes.directory / f"latency-{engine.label}-{engine.kamailio.path}.pcap"
    capture = processes.start(
        f"tcpdump-{engine.label}",
        ["tcpdump", "-i", "lo", "-n", "-s", "2048", "-B", "16384", "--time-stamp-precision", "nano",
         "-w", str(pcap), "udp", "port", str(engine.kamailio.port)],
    )  # fmt: skip
    capture.wait_for_log("listening on", timeout=10)
    run = run_calls(
        processes,
        engine,
        args.latency_rate,
        args.latency_rate * args.latency_seconds,
        scenario,
        numbers,
    )
    time.sleep(0.3)
    capture.stop()
    processes.processes.remove(capture)
    dropped = re.search(r"(\d+) packets? dropped by kernel", capture.log())
    latencies = sorted(decision_latencies(pcap, engine.kamailio.port, carrier_port))
    pcap.unlink()
    return latencies, run, f"{dropped[1] if dropped else '?'} dropped by the kernel"


# --- The bench ----------------------------------------------------------------------------


def compiled(engine: Engine, plan_id: int, count: int) -> bool:
    """Whether `count` engine processes logged that they compiled the bench plan."""
    if engine.label == "trivial":
        return True
    return engine.process.log().count(f"route table of plan {plan_id} compiled") >= count


def outcome_sink(processes: ProcessGroup, path: str, answer_file: Path) -> int:
    """A trivial engine taking the outcome events Kamailio POSTs (HTTP and in-process
    paths), as production sends them to the API's own server; its port."""
    port = free_port()
    sink = processes.start(
        f"outcome-sink-{path}", trivial_command("http", f"{HOST}:{port}", answer_file)
    )
    sink.wait_until(lambda: tcp_accepts(port), what="outcome sink")
    return port


def start_path(
    processes: ProcessGroup, path: str, args, token: str, answer_file: Path
) -> list[Engine]:
    """The engines of one path (trivial, then this one), each with its own Kamailio."""
    engines = []
    sink_port = outcome_sink(processes, path, answer_file) if path.startswith("http") else None
    for label in ("trivial", "engine"):
        if args.only and label != args.only:
            continue
        if path == "kemi-inprocess":
            # The engine is Kamailio itself: its SIP workers decide.
            sink_port = sink_port or outcome_sink(processes, path, answer_file)
            defines = {"OUTCOME_URL": f"http://{HOST}:{sink_port}/api/v1/kamailio/events"}
            env_extra = {}
            if label == "trivial":
                defines["ENGINE_MODULE"] = "bench.trivial_inprocess"
                env_extra["TRIVIAL_ANSWER_FILE"] = str(answer_file)
            kamailio = start_kamailio(
                processes, path, f"kamailio-{path}-{label}", args, env_extra, **defines
            )
            engines.append(Engine(label, kamailio, kamailio.process))
            continue
        if "evapi" in path:
            kamailio = start_kamailio(processes, path, f"kamailio-{path}-{label}", args)
            where = f"{HOST}:{kamailio.evapi_port}"
            nosip = kamailio.port if path == "evapi-nosip" else None
            if label == "trivial":
                options = list(args.trivial_option)
                if nosip is not None:
                    options += ["--nosip", f"{HOST}:{nosip}"]
                process = processes.start(
                    f"trivial-{path}", trivial_command(path, where, answer_file, *options)
                )
            else:
                process = processes.start(
                    f"bridge-{path}",
                    engine_evapi_command(kamailio.evapi_port, args.bridge_processes, nosip),
                    cwd=ROOT,
                    env=engine_env(),
                )
            # Kamailio logs the connection at INFO only: the engine's own line instead.
            process.wait_for_log(f"connected to {where}", timeout=60)
        else:
            port = free_port()
            if label == "trivial":
                command = trivial_command(path, f"{HOST}:{port}", answer_file)
                process = processes.start(f"trivial-{path}", command)
            else:
                command = engine_http_command(port, args.http_workers)
                process = processes.start(f"engine-{path}", command, cwd=ROOT, env=engine_env())
            process.wait_until(
                lambda port=port: tcp_accepts(port), what=f"{label} on {port}", timeout=60
            )
            kamailio = start_kamailio(
                processes, path, f"kamailio-{path}-{label}", args,
                ENGINE_URL=f"http://{HOST}:{port}/api/v1/kamailio/rtjson",
                OUTCOME_URL=f"http://{HOST}:{sink_port}/api/v1/kamailio/events",
                ENGINE_TOKEN=token,
            )  # fmt: skip
        engines.append(Engine(label, kamailio, process))
    return engines


def warm_up(processes, engines, args, table: Table, scenario, numbers) -> None:
    """Calls at 100/s, 3 s at a time, until the engine compiled the bench plan (its
    table loads all plans, in the background, while the database answers) and a run
    is clean."""
    path = engines[0].kamailio.path
    if path == "kemi-inprocess":
        count = 1  # loaded once, before Kamailio forks (kamailio.inprocess.preload)
    elif "evapi" in path:
        count = args.bridge_processes
    else:
        count = args.http_workers
    for engine in engines:
        started = time.monotonic()
        while True:
            ready = compiled(engine, table.plan_id, count)
            run = run_calls(processes, engine, 100, 300, scenario, numbers)
            waited = time.monotonic() - started
            if ready and run.clean:
                print(f"  {engine.label} warmed up in {waited:.0f} s", flush=True)
                break
            print(f"  warm-up ({waited:.0f} s, compiled: {ready}): {run.line()}", flush=True)
            if waited > args.warmup_timeout:
                raise SystemExit(
                    f"{engine.label} on {engine.kamailio.path}: not warm after {waited:.0f} s"
                )
            if not engine.process.running:
                raise ProcessError(f"the engine exited\n{engine.process.describe()}")


def loads() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def bench_path(processes, path, args, table, token, carriers, files) -> dict:
    scenario, numbers, answer_file = files
    print(f"\n== {path} ==", flush=True)
    engines = start_path(processes, path, args, token, answer_file)
    warm_up(processes, engines, args, table, scenario, numbers)
    labels = [e.label for e in engines]
    result: dict = {"path": path, "load_before": loads(), "latency": {}, "latency_clean": {}}
    # The latency first, while both chains are fresh: after an overloaded step Kamailio
    # still holds that step's transactions for seconds.
    for engine in engines:
        latencies, run, dropped = measure_latency(
            processes, engine, args, carriers[0], scenario, numbers
        )
        result["latency"][engine.label] = latencies
        result["latency_clean"][engine.label] = run.clean
        result.setdefault("latency_cpu_ms", {})[engine.label] = run.engine_cpu / run.calls * 1000
        print(
            f"  decision latency {engine.label}: {len(latencies):,} calls captured ({dropped}), "
            f"p50 {percentile(latencies, 0.5) * 1000:.3f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.3f} ms; {run.line()}",
            flush=True,
        )
        time.sleep(args.pause)
    clean = dict.fromkeys(labels, 0)
    stepping = dict.fromkeys(labels, True)
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    for rate in args.rates:
        for engine in engines:
            if not stepping[engine.label]:
                continue
            run = run_calls(processes, engine, rate, rate * args.seconds, scenario, numbers)
            print("  " + run.line(), flush=True)
            if run.clean:
                clean[engine.label] = rate
                cpu[engine.label].append(run.engine_cpu / run.calls * 1000)
                time.sleep(args.pause)
            else:
                stepping[engine.label] = False
                # Let the failed calls' transactions end before the next run.
                time.sleep(max(args.pause, 10))
        if not any(stepping.values()):
            break
    result["clean"] = clean
    # The median of the clean steps; without any, the latency run's (marked in the table).
    result["cpu_ms"] = {
        k: (sorted(v)[len(v) // 2] if v else -result["latency_cpu_ms"][k]) for k, v in cpu.items()
    }
    result["load_after"] = loads()
    result["memory"] = {engine.label: kamailio_memory(engine) for engine in engines}
    for engine in engines:
        print(f"  Kamailio memory, {engine.label}: {result['memory'][engine.label]}", flush=True)
        for process in {id(p): p for p in (engine.process, engine.kamailio.process)}.values():
            process.stop()
            processes.processes.remove(process)
    return result


def kamailio_memory(engine: Engine) -> str:
    """Kamailio's processes after the runs: how many, their PSS in all (each one's share
    of the pages it shares), and the largest one's RSS and USS (its private pages)."""
    figures = []
    for pid in group_pids(engine.kamailio.process.popen.pid):
        values = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                name, _, rest = line.partition(":")
                values[name] = int(rest.split()[0]) / 1024
        if values:
            uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
            figures.append((values.get("Rss", 0), values.get("Pss", 0), uss))
    if not figures:
        return "-"
    rss, _, uss = max(figures)
    return (
        f"{len(figures)} processes, PSS {sum(f[1] for f in figures):.0f} MB in all; "
        f"largest RSS {rss:.0f} MB, USS {uss:.0f} MB"
    )


def report(results: list[dict], args) -> None:
    print("\n" + "=" * 100)
    print(
        f"End to end: {args.seconds} s of calls per step ({', '.join(map(str, args.rates))}/s), "
        f"serial failover on every call (503 then 200), hold {HOLD_MS} ms; latency at "
        f"{args.latency_rate}/s for {args.latency_seconds} s"
    )
    print(
        "| path | trivial clean calls/s | engine clean calls/s | ratio | decision p50 trivial / "
        "engine / added (ms) | p99 trivial / engine (ms) | engine CPU ms/call trivial / engine "
        "| load before -> after |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    goals = {"evapi": 0.95, "evapi-nosip": 0.95, "http-async": 0.90, "http": 0.90,
             "kemi-evapi": 0.95, "kemi-inprocess": 0.95}  # fmt: skip
    verdicts = []
    for r in results:
        t, e = r["clean"].get("trivial", 0), r["clean"].get("engine", 0)
        lt, le = r["latency"].get("trivial", []), r["latency"].get("engine", [])
        p50t, p50e = percentile(lt, 0.5) * 1000, percentile(le, 0.5) * 1000
        cpu = {k: f"{v:.3f}" if v >= 0 else f"{-v:.3f}*" for k, v in r["cpu_ms"].items()}
        print(
            f"| {r['path']} | {t:,} | {e:,} | {f'{e / t:.0%}' if t else '-'} | "
            f"{p50t:.3f} / {p50e:.3f} / {p50e - p50t:+.3f} | {percentile(lt, 0.99) * 1000:.3f} / "
            f"{percentile(le, 0.99) * 1000:.3f} | {cpu.get('trivial', '-')} / "
            f"{cpu.get('engine', '-')} | {r['load_before']} -> {r['load_after']} |"
        )
        goal = goals[r["path"]]
        if not all(r["latency_clean"].values()):
            latency_verdict = "not measured (a latency run was unclean: the chain was overloaded)"
        else:
            latency_verdict = "yes" if p50e - p50t < 0.3 else "no"
        if not t:
            rate_verdict = "not measured (the trivial engine had no clean step)"
        elif t == args.rates[0] and e >= t:
            rate_verdict = (
                "undecided (both clean at the first step only: use lower or finer --rates)"
            )
        else:
            rate_verdict = "yes" if e / t >= goal else "no"
        verdicts.append(
            f"goal {r['path']}: engine at least {goal:.0%} of the trivial engine's clean calls/s: "
            f"{rate_verdict}; decision latency added under 0.3 ms p50: {latency_verdict}"
        )
    print(
        "Clean: every call answered 200, no other final reply, no failed call, no INVITE "
        "retransmitted by the caller; stepping stops at an engine's first unclean step, so its "
        "clean rate is the last step before it (0: none was clean).\n"
        "Decision latency: tcpdump on lo (kernel timestamps), per Call-ID from the first INVITE "
        "into Kamailio to the first INVITE out to the first carrier; 'added' is engine minus "
        "trivial.\nCPU: utime+stime of the engine's processes over each clean step, divided by "
        "its calls (median of the clean steps; * without a clean step: the latency run's)."
    )
    print("\n".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--paths",
        default="evapi,http-async",
        help="evapi, evapi-nosip, http-async, http, kemi-evapi, kemi-inprocess",
    )
    parser.add_argument(
        "--rates", default="250,500,750,1000,1250,1500,1750,2000,2500,3000", help="Calls/s steps."
    )
    parser.add_argument("--seconds", type=int, default=10, help="Calls per step: rate x this.")
    parser.add_argument("--latency-rate", type=int, default=300)
    parser.add_argument("--latency-seconds", type=int, default=10)
    parser.add_argument("--pause", type=float, default=2.0, help="Seconds between runs.")
    parser.add_argument("--sip-workers", type=int, default=8, help="Kamailio's SIP_WORKERS.")
    parser.add_argument("--shm-mb", type=int, default=1024, help="Kamailio's -m.")
    parser.add_argument("--kamailio-log-level", type=int, default=1, help="LOG_LEVEL define.")
    parser.add_argument("--http-workers", type=int, default=2)
    parser.add_argument("--bridge-processes", type=int, default=1)
    parser.add_argument("--warmup-timeout", type=float, default=180.0)
    parser.add_argument(
        "--kamailio-modules",
        default=os.environ.get("E2E_KAMAILIO_MODULES", str(ROOT / ".ci/build/kamailio-modules")),
        help="Directory with http_async_client.so (searched before Kamailio's own).",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the logs' directory.")
    parser.add_argument(
        "--only", choices=("trivial", "engine"), help="Measure one engine only (debugging)."
    )
    parser.add_argument(
        "--trivial-option",
        action="append",
        default=[],
        help="An option for bench.trivial_engine (e.g. --trivial-option=--no-quickack).",
    )
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if unknown := set(paths) - set(CONFIGS):
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    if "http-async" in paths:
        if not (Path(args.kamailio_modules) / "http_async_client.so").exists():
            parser.error(f"no http_async_client.so in {args.kamailio_modules} (--kamailio-modules)")
        system = [str(p) for p in Path("/usr/lib").glob("*/kamailio/modules")]
        args.kamailio_modules = ":".join([args.kamailio_modules, *system])
    if shutil.which("tcpdump") is None:
        parser.error("tcpdump is needed for the latency (apt-get install tcpdump)")
    # Ctrl-C (even when started with SIGINT ignored, as a shell does for `&`) and SIGTERM
    # (`timeout`, kill) end the run through the `finally` below, which stops everything.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    print(machine())
    print(f"uptime load before: {loads()}")
    setup_django()
    directory = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    processes = ProcessGroup(directory)
    token_name = f"e2e-bench-{os.getpid()}"
    results = []
    try:
        first = start_carrier(processes, "carrier_reject", "carrier-503")
        second = start_carrier(processes, "carrier_answer", "carrier-200")
        table = ensure_table(first, second, directory)
        answer_file = directory / "answer.json"
        answer_file.write_text(json.dumps(table.answer))
        numbers = directory / "numbers.csv"
        numbers.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in table.numbers))
        files = (caller_scenario(directory), numbers, answer_file)
        token = ""
        if any(p.startswith("http") for p in paths):
            token = subprocess.run(
                manage("create_kamailio_token", token_name, "--network", "127.0.0.1/32"),
                cwd=ROOT, env=server_env(), capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
        print(
            f"carriers 503 on {first}, 200 on {second}; {TENANT}: plan {table.plan_id}, "
            f"{PREFIXES:,} prefixes, {len(table.numbers):,} called numbers (SIPp -inf, in turn)"
        )
        for path in paths:
            results.append(bench_path(processes, path, args, table, token, (first, second), files))
    finally:
        processes.stop_all()
        with contextlib.suppress(Exception):
            from api.models import KamailioToken

            KamailioToken.objects.filter(name=token_name).delete()
        if args.keep:
            print(f"logs kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    report(results, args)
    print(f"uptime load after: {loads()}")


if __name__ == "__main__":
    main()
