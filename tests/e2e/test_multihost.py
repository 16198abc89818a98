"""Several hosts: two Kamailio hosts, two engine hosts, one database, in network namespaces.

The picture (tests/e2e/netns.py builds the network; docs/multihost.md explains it):

    pstn   SIPp callers and the carrier (the calls' source and their trunk)
    kam1   Kamailio over EVAPI (:5060) and Kamailio over HTTP (:5070)
    kam2   the same
    eng1   the EVAPI bridge (connected to both Kamailios) and the HTTP engine (:8000)
    eng2   the same
    root   the test's own web server (REST API, on 127.0.0.1) and a TCP forwarder
           from the bridge address to PostgreSQL on 127.0.0.1

kam1's HTTP Kamailio asks eng1 first and eng2 second (ENGINE_URL, ENGINE_URL2), kam2's
the other way round. Every engine runs the compiled route table (ROUTING_TABLE=
compiled), which polls the database's change log every 0.2 s.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.e2e.netns import (
    Host,
    Network,
    bridge_argv,
    http_engine_argv,
    namespaces_unavailable,
    sip_options_answered_at,
    tcp_open,
    udp_bound,
)
from tests.e2e.processes import Process, ProcessGroup
from tests.e2e.services import BASE_DIR, CONFIGS, http_async_module_path, http_ok, service_env
from tests.e2e.sipp import SCENARIOS, CallResult
from tests.servers import child_database_url

_missing = [tool for tool in ("kamailio", "sipp", "ip") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"multi-host tests need {' and '.join(_missing)}", allow_module_level=True)
_why_not = namespaces_unavailable()
if _why_not:
    pytest.skip(f"multi-host tests need network namespaces: {_why_not}", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EVAPI_PORT, HTTP_PORT, ENGINE_PORT, EVAPI_SOCKET, CARRIER_PORT = 5060, 5070, 8000, 8448, 5080
# The HTTP client: the production one where it is built, else Debian's http_client.
HTTP_PATH = "http-async" if http_async_module_path() else "http"
RUN_LIMIT = 30.0

_BRIDGE_DECISION = re.compile(r"DEBUG evapi_bridge\.bridge: (\d+\.\d+\.\d+\.\d+):\d+: tindex=")


# --- The network and the database forwarder (one per module) -----------------------


@pytest.fixture(scope="module")
def network():
    net = Network()
    try:
        net.create()
        for label in ("pstn", "kam1", "kam2", "eng1", "eng2"):
            net.add_host(label)
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def database_url(network, django_db_setup, django_db_blocker, tmp_path_factory):
    """The test database's URL as the namespaces reach it: through a forwarder on the
    bridge address (PostgreSQL listens on 127.0.0.1 only)."""
    with django_db_blocker.unblock():
        url = urlsplit(child_database_url())
    if url.scheme.startswith("sqlite"):
        pytest.skip("multi-host tests need PostgreSQL (DATABASE_URL)")
    group = ProcessGroup(tmp_path_factory.mktemp("forwarder"))
    try:
        port = 15432
        while tcp_open(network.gateway, port):
            port += 1
        target = f"{url.hostname}:{url.port or 5432}"
        forwarder = group.start(
            "forwarder",
            [sys.executable, "-m", "tests.e2e.netns", "forward", f"{network.gateway}:{port}",
             target],
            cwd=BASE_DIR,
        )  # fmt: skip
        forwarder.wait_until(lambda: tcp_open(network.gateway, port), what="database forwarder")
        netloc = url.netloc.rsplit("@", 1)
        auth = f"{netloc[0]}@" if len(netloc) == 2 else ""
        yield urlunsplit(url._replace(netloc=f"{auth}{network.gateway}:{port}"))
    finally:
        group.stop_all()


# --- The hosts' processes (per test: the test database is emptied after each) --------


@dataclass
class Cluster:
    network: Network
    processes: ProcessGroup
    evapi: dict[str, Process]  # Kamailio over EVAPI, by host label
    http: dict[str, Process]  # Kamailio over HTTP, by host label
    bridges: dict[str, Process]
    engines: dict[str, Process]
    env: dict[str, str]

    def host(self, label: str) -> Host:
        return self.network.hosts[label]

    def kamailios(self) -> list[tuple[str, Process, int]]:
        """(name, process, SIP port) of the four Kamailios."""
        return [
            (f"{label}-{kind}", procs[label], port)
            for label in ("kam1", "kam2")
            for kind, procs, port in (
                ("evapi", self.evapi, EVAPI_PORT),
                ("http", self.http, HTTP_PORT),
            )
        ]


def kamailio_argv(path: str, run_dir: str, defines: dict[str, str | int]) -> list[str]:
    argv = ["kamailio", "-f", str(CONFIGS[path]), "-DD", "-E", "-m", "64", "-M", "16",
            "-Y", run_dir, "-w", run_dir]  # fmt: skip
    if path == "http":
        argv += ["-A", "WITH_HTTP_CLIENT"]
    elif path == "http-async":
        defines = {**defines, "MODULES_DIR": http_async_module_path() or ""}
    for name, value in defines.items():
        argv += ["-A", f'{name}="{value}"' if isinstance(value, str) else f"{name}={value}"]
    return argv


@pytest.fixture
def route_table(api, network):
    """Tenant "mh": calls from the pstn host; 33 routed to its carrier, 77 refused (480)."""
    pstn = network.hosts["pstn"].address
    api.post("tenants", {"name": "Multi-host", "slug": "mh"})
    api.post("tenant-sources", {"tenant": "mh", "network": f"{pstn}/32"})
    carrier = api.post("carriers", {"tenant": "mh", "name": "MH carriers"})["id"]
    trunk = {"carrier": carrier, "name": "answer", "host": pstn, "port": CARRIER_PORT}
    trunk_id = api.post("trunks", trunk)["id"]
    targets = [{"trunk": trunk_id, "priority": 1, "weight": 100}]
    api.post(
        "prefixes",
        {"tenant": "mh", "prefix": "33", "action": "route", "routing_mode": "serial",
         "targets": targets},
    )  # fmt: skip
    api.post(
        "prefixes",
        {"tenant": "mh", "prefix": "77", "action": "reject", "reject_code": 480,
         "reject_reason": "Not Yet"},
    )  # fmt: skip
    return "MH carriers/answer"


@pytest.fixture
def cluster(network, database_url, processes, route_table):
    from tests.e2e.services import manage

    addresses = {label: host.address for label, host in network.hosts.items()}
    token = manage("create_kamailio_token", "multi-host", "--network", network.cidr).strip()
    env = service_env()
    env.update(
        ROUTING_TABLE="compiled",
        DATABASE_URL=database_url,
        ALLOWED_HOSTS=",".join(addresses.values()),
        GUNICORN_ACCESSLOG="-",
    )
    run_dirs = []
    evapi, http = {}, {}
    # Kamailios first: the bridges connect to them.
    for label, first, second in (("kam1", "eng1", "eng2"), ("kam2", "eng2", "eng1")):
        host = network.hosts[label]
        for kind, port in (("evapi", EVAPI_PORT), ("http", HTTP_PORT)):
            run_dir = tempfile.mkdtemp(prefix="kam-", dir="/tmp")
            run_dirs.append(run_dir)
            defines: dict[str, str | int] = {
                "LISTEN_ADDR": host.address,
                "LISTEN_PORT": port,
                "RUN_DIR": run_dir,
                "CTL_SOCKET": f"unix:{run_dir}/ctl",
                "SIP_WORKERS": 2,
            }
            if kind == "evapi":
                defines |= {"EVAPI_BIND": f"{host.address}:{EVAPI_SOCKET}",
                            "EVAPI_ALLOWED_NETWORKS": network.cidr}  # fmt: skip
                path = "evapi"
            else:
                engine = "api/v1/kamailio/rtjson"
                defines |= {
                    "ENGINE_URL": f"http://{addresses[first]}:{ENGINE_PORT}/{engine}",
                    "ENGINE_URL2": f"http://{addresses[second]}:{ENGINE_PORT}/{engine}",
                    # Outcomes are not what this test is about, and the rtjson server
                    # has no events endpoint: a closed port refuses them at once (each
                    # batch lost is logged by Kamailio), costing the engines nothing.
                    "OUTCOME_URL": f"http://{addresses[first]}:9/api/v1/kamailio/events",
                    "ENGINE_TOKEN_FROM_ENV": 1,
                    "SIP_WORKERS": 4,
                }
                path = HTTP_PATH
            process = processes.start(
                f"{label}-kamailio-{kind}",
                host.argv(kamailio_argv(path, run_dir, defines)),
                cwd=run_dir,
                env={**os.environ, "KAMAILIO_ENGINE_TOKEN": token},
            )
            (evapi if kind == "evapi" else http)[label] = process
    for label in ("kam1", "kam2"):
        for process, port in ((evapi[label], EVAPI_PORT), (http[label], HTTP_PORT)):
            address = addresses[label]
            process.wait_until(
                lambda a=address, p=port: sip_options_answered_at(a, p),
                what=f"{process.name} answering OPTIONS",
            )
    bridges, engines = {}, {}
    sockets = [f"{addresses[k]}:{EVAPI_SOCKET}" for k in ("kam1", "kam2")]
    for label in ("eng1", "eng2"):
        host = network.hosts[label]
        engines[label] = processes.start(
            f"{label}-engine",
            host.argv(http_engine_argv(f"{host.address}:{ENGINE_PORT}", workers=2)),
            cwd=BASE_DIR,
            env=env,
        )
        bridges[label] = processes.start(
            f"{label}-bridge", host.argv(bridge_argv(*sockets, verbose=True)), cwd=BASE_DIR, env=env
        )
    for label in ("eng1", "eng2"):
        url = f"http://{addresses[label]}:{ENGINE_PORT}/healthz"
        engines[label].wait_until(lambda url=url: http_ok(url), what=f"{label} engine /healthz")
    for process in evapi.values():
        process.wait_for_log("(2 connected)")
    try:
        yield Cluster(network, processes, evapi, http, bridges, engines, env)
    finally:
        processes.stop_all()
        for run_dir in run_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)


# --- SIPp on the pstn host --------------------------------------------------------------


class PstnSipp:
    """SIPp callers and carriers on the pstn host (ports from 5100 up, its own)."""

    def __init__(self, cluster: Cluster, directory: Path) -> None:
        self.cluster = cluster
        self.host = cluster.host("pstn")
        self.directory = directory
        self.next_port = 5100
        self.runs = 0

    def _base(self, name: str, port: int) -> tuple[list[str], Path]:
        self.next_port += 10
        base = self.next_port
        log = self.directory / f"{name}-actions.log"
        argv = ["sipp", "-i", self.host.address, "-p", str(port),
                "-mi", self.host.address, "-mp", str(base + 20000),
                "-ci", self.host.address, "-cp", str(base + 30000), "-nostdin",
                "-trace_logs", "-log_file", str(log),
                "-trace_err", "-error_file", str(self.directory / f"{name}-err.log")]  # fmt: skip
        return argv, log

    def carrier(self) -> Process:
        argv, _ = self._base("carrier", CARRIER_PORT)
        argv += ["-sf", str(SCENARIOS / "carrier_answer.xml")]
        process = self.cluster.processes.start("carrier", self.host.argv(argv), cwd=self.directory)
        process.wait_until(
            lambda: udp_bound(self.host, CARRIER_PORT), what=f"carrier on port {CARRIER_PORT}"
        )
        return process

    def calls(self, specs: list[tuple[str, int, str, int, int]]) -> list[CallResult]:
        """Callers run at once, one per (kamailio address, port, callee, calls, rate)."""
        running = []
        for address, port, callee, calls, rate in specs:
            self.runs += 1
            name = f"caller-{self.runs}"
            self.next_port += 1
            argv, log = self._base(name, self.next_port)
            argv[1:1] = [f"{address}:{port}", "-sf", str(SCENARIOS / "caller.xml")]
            argv += ["-s", callee, "-m", str(calls), "-r", str(rate), "-d", "50",
                     "-pause_msg_ign", "-recv_timeout", "10000", "-timeout", "25s",
                     "-key", "caller", "3312", "-key", "caller_name", "Alice"]  # fmt: skip
            output = self.directory / f"{name}.out"
            with open(output, "wb") as out:
                popen = subprocess.Popen(
                    self.host.argv(argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.directory,
                    start_new_session=True,
                )
            running.append((popen, log, output, time.monotonic()))
        results = []
        deadline = time.monotonic() + RUN_LIMIT
        for popen, log, output, started in running:
            try:
                returncode = popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                returncode = -9
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
            finals = []
            if log.exists():
                finals = [
                    int(line.split()[1])
                    for line in log.read_text(errors="replace").splitlines()
                    if line.startswith("final ")
                ]
            results.append(
                CallResult(
                    returncode,
                    time.monotonic() - started,
                    finals,
                    output.read_text(errors="replace"),
                )
            )
        return results


@pytest.fixture
def pstn(cluster, tmp_path):
    sipp = PstnSipp(cluster, tmp_path)
    sipp.carrier()
    return sipp


def every_kamailio(cluster: Cluster, callee: str, calls: int, rate: int):
    return [(cluster.host(name.split("-")[0]).address, port, callee, calls, rate)
            for name, _, port in cluster.kamailios()]  # fmt: skip


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# --- The tests ----------------------------------------------------------------------------


def warm_up(cluster: Cluster, pstn: PstnSipp) -> None:
    """A few calls through every Kamailio, results ignored: an engine's first decisions
    (database connections through the forwarder, the compiled table still loading)
    can take longer than its deadline on a busy machine, and get a 503 from the
    engine itself, which is not what these tests are about."""
    pstn.calls(every_kamailio(cluster, "33123", 20, 10))


def test_both_kamailios_are_served_by_both_engines(cluster, pstn):
    warm_up(cluster, pstn)
    results = pstn.calls(every_kamailio(cluster, "33123", 40, 20))

    for (name, _, _), result in zip(cluster.kamailios(), results, strict=True):
        assert result.returncode == 0, f"{name}: {result.describe()}"
        assert result.finals == [200] * 40, f"{name}: {result.describe()}"
    kam = {label: cluster.host(label).address for label in ("kam1", "kam2")}
    # EVAPI: each bridge decided calls of each Kamailio.
    for label, bridge in cluster.bridges.items():
        seen = Counter(_BRIDGE_DECISION.findall(bridge.log()))
        assert seen[kam["kam1"]] > 0, (label, seen)
        assert seen[kam["kam2"]] > 0, (label, seen)
    # HTTP: each engine is the first choice of one Kamailio (its access log).
    for engine, kamailio in (("eng1", "kam1"), ("eng2", "kam2")):
        log = cluster.engines[engine].log()
        assert f'{kam[kamailio]} - "POST /api/v1/kamailio/rtjson ' in log, engine


def test_a_route_changed_on_one_host_is_live_on_every_host_within_a_second(
    cluster, pstn, route_table, tmp_path
):
    warm_up(cluster, pstn)
    before = pstn.calls(every_kamailio(cluster, "77123", 1, 1))
    assert [r.finals for r in before] == [[480]] * 4, [r.describe() for r in before]

    # The change, made on engine host 1 with a management command.
    csv_path = tmp_path / "change.csv"
    with open(csv_path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["prefix", "action", "routing_mode", "targets"])
        writer.writerow(["77", "route", "serial", f"{route_table}:1:100"])
    done = subprocess.run(
        cluster.host("eng1").argv(
            [sys.executable, "manage.py", "import_prefixes", str(csv_path), "--tenant", "mh",
             "--yes"]
        ),
        cwd=BASE_DIR, env=cluster.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    changed = time.monotonic()  # the import committed just before its process exited
    assert done.returncode == 0, done.stderr

    # One call through each Kamailio, again and again, until each has seen the change.
    first_seen: dict[str, float] = {}
    names = [name for name, _, _ in cluster.kamailios()]
    while len(first_seen) < len(names) and time.monotonic() - changed < 3.0:
        sent = time.monotonic() - changed
        results = pstn.calls(every_kamailio(cluster, "77123", 1, 1))
        for name, result in zip(names, results, strict=True):
            if result.finals == [200] and name not in first_seen:
                first_seen[name] = sent
    print(
        "\nroute change on eng1 -> first call routed by it, seconds after the import: "
        + ", ".join(f"{name} {seen:.2f}" for name, seen in sorted(first_seen.items()))
        + f"; {load()}"
    )
    assert sorted(first_seen) == sorted(names), first_seen
    # The call that saw it was sent within a second of the change.
    assert max(first_seen.values()) <= 1.0, first_seen


@pytest.mark.parametrize("failure", ["killed", "cut off"])
def test_an_engine_host_lost_under_load_loses_no_call(failure, cluster, pstn):
    """killed: every process of eng2 SIGKILLed (its kernel still refuses connections, so
    Kamailio sees the EVAPI connections close at once). cut off: eng2's link goes down
    (its processes run on, unreachable: no FIN, no RST; connections time out)."""
    warm_up(cluster, pstn)
    # Calls/s per Kamailio: EVAPI 40, HTTP 20 (the surviving engine host's HTTP server,
    # two sync workers on a shared 2-core machine, then takes both HTTP Kamailios), 8 s.
    seconds = 8
    rates = {"evapi": 40, "http": 20}
    specs = [
        (
            cluster.host(name.split("-")[0]).address,
            port,
            "33123",
            rates[kind] * seconds,
            rates[kind],
        )
        for name, _, port in cluster.kamailios()
        for kind in [name.split("-")[1]]
    ]

    def lose_engine_host() -> None:
        if failure == "cut off":
            cluster.network.link_down("eng2")
            return
        for process in (cluster.bridges["eng2"], cluster.engines["eng2"]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)

    timer = threading.Timer(3.0, lose_engine_host)
    timer.start()
    try:
        results = pstn.calls(specs)
    finally:
        timer.cancel()

    if failure == "killed":
        assert not cluster.bridges["eng2"].running
        assert not cluster.engines["eng2"].running
    for (name, _, _), spec, result in zip(cluster.kamailios(), specs, results, strict=True):
        assert result.returncode == 0, f"{name}: {result.describe()}"
        assert result.finals == [200] * spec[3], f"{name}: {result.describe()}"
    asked = {
        label: process.log().count("within ENGINE_RETRY_MS: asked")
        for label, process in cluster.evapi.items()
    }
    retried = {
        label: process.log().count("asking the other one")
        for label, process in cluster.http.items()
    }
    print(
        f"\nengine host eng2 {failure} after 3 s: {sum(spec[3] for spec in specs)} calls in "
        f"{seconds} s, EVAPI calls asked again {asked}, HTTP queries sent on to the other "
        f"engine {retried}; {load()}"
    )
    # kam2's HTTP Kamailio asks eng2 first: from then on its calls went on to eng1.
    assert retried["kam2"] > 0
