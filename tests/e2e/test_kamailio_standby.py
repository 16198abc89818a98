"""Several engines per Kamailio, and a hot standby: an engine dies under load, no call is lost.

EVAPI: two bridges connected to one Kamailio share its calls (each call is asked
of one of them); when one is killed or hangs, the calls it was deciding are asked
again of the other after ENGINE_RETRY_MS. HTTP: with ENGINE_URL2 set, a query the
first engine fails is sent to the second. The KEMI config (kamailio-kemi.cfg and
kemi_routing.py) does both too: the same tests run through its EVAPI and HTTP modes.
SIPp's exit status and the final code of every call say whether a call was lost;
Kamailio's log says how many were asked again and how late they were answered
(printed: run with -s to see the figures).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import sys
import threading
import time

import pytest

from tests.e2e.netns import bridge_argv, http_engine_argv
from tests.e2e.processes import HOST, free_port
from tests.e2e.services import BASE_DIR, HTTP_ASYNC, http_ok, kemi_param, service_env

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"end-to-end tests need {' and '.join(_missing)} on PATH", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Bounded load (a shared 2-core machine): RATE calls/s for SECONDS, the engine
# killed or hung after KILL_AFTER seconds.
RATE = 100
SECONDS = 8
KILL_AFTER = 3.0
# The config's default (kamailio-evapi.cfg).
ENGINE_RETRY_MS = 400
ENGINE_TIMEOUT_MS = 1000

_STOPPED = re.compile(r"stopped; since start-up \(\d+ s: (\d+) events, (\d+) answers")
_REASKED = re.compile(r"did not answer \S+ within ENGINE_RETRY_MS: asked e\d+")
_LATE = re.compile(r"answered \S+ (-?\d+) ms after it was asked again")


def start_bridges(processes, kamailio, engine_env, count: int) -> list:
    bridges = []
    for n in range(count):
        seen = len(kamailio.process.log())
        bridge = processes.start(
            f"bridge-{n + 1}",
            bridge_argv(f"{HOST}:{kamailio.evapi_port}"),
            cwd=BASE_DIR,
            env=engine_env,
        )
        bridge.wait_for_log(f"connected to {HOST}:{kamailio.evapi_port}")
        kamailio.process.wait_for_log(f"({n + 1} connected)", after=seen)
        bridges.append(bridge)
    return bridges


def warm_up(sipp, kamailio, calls: int = 60) -> int:
    """A few calls so that every bridge has its database connections and table: a
    bridge's first decisions can take longer than its deadline (a 503 from the engine
    itself, not what these tests are about). How many calls it placed."""
    sipp.call(kamailio.port, "33123", calls=calls, rate=calls // 2)
    return calls


def routing_events(bridge) -> int:
    """Routing events a bridge received, from its summary line at exit (stop it first)."""
    found = _STOPPED.search(bridge.log())
    assert found, f"no summary line from {bridge.name}:\n{bridge.describe()}"
    return int(found[1])


def outcome_totals() -> tuple[int, int]:
    """(attempts, ended) the engines counted for tenant e2e."""
    from outcomes.models import OutcomeBucket

    buckets = list(OutcomeBucket.objects.filter(tenant__slug="e2e"))
    return sum(b.attempts for b in buckets), sum(b.ended for b in buckets)


def later(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def reask_figures(kamailio_log: str) -> tuple[int, list[int]]:
    """(calls asked again, ms from the second ask to its answer for each answered one)."""
    asked = len(_REASKED.findall(kamailio_log))
    late = [int(ms) for ms in _LATE.findall(kamailio_log)]
    return asked, late


def figures(what: str, calls: int, seconds: float, asked: int, late: list[int]) -> None:
    load = os.getloadavg()
    delays = sorted(late)
    spread = f"{delays[0]}..{delays[-1]} ms (median {delays[len(delays) // 2]})" if delays else "-"
    print(
        f"\n{what}: {calls} calls in {seconds:.1f} s, {asked} asked again after "
        f"{ENGINE_RETRY_MS} ms, answered {spread} after the second ask; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


@pytest.fixture(scope="module")
def engine_env() -> dict[str, str]:
    # Production's table: decisions from memory, so that the engines' own speed on a
    # busy test machine is not what is measured.
    return service_env(ROUTING_TABLE="compiled")


@pytest.fixture
def evapi_proxy(request, start_kamailio, web_server):
    """kamailio-evapi.cfg, or (indirect parameter "kemi-evapi") the KEMI config in its
    EVAPI mode: the same hot standby, so the same tests."""
    # web_server: the module's database and the engine environment are set up.
    return start_kamailio(getattr(request, "param", "evapi"))


# The native EVAPI config and the KEMI config's EVAPI mode, for the hot-standby cases.
EVAPI_CONFIGS = pytest.mark.parametrize(
    "evapi_proxy", ["evapi", kemi_param("kemi-evapi")], indirect=True
)


# --- EVAPI ----------------------------------------------------------------------------


def test_two_bridges_on_one_kamailio_share_its_calls(
    evapi_proxy, processes, engine_env, table, sipp
):
    carrier = sipp.carrier("carrier_answer", "carrier")
    table.route("33", table.trunk("up", carrier.port))
    bridges = start_bridges(processes, evapi_proxy, engine_env, 2)
    warm = warm_up(sipp, evapi_proxy)

    result = sipp.call(evapi_proxy.port, "33123", calls=60, rate=60)

    assert result.returncode == 0, result.describe()
    assert result.finals == [200] * 60, result.describe()
    # Outcome events go to one bridge each: every call's attempt and end counted
    # once (a broadcast would count them twice).
    expected = warm + 60
    deadline = time.monotonic() + 10
    while outcome_totals() != (expected, expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # anything counted twice would show up by now
    assert outcome_totals() == (expected, expected)
    for bridge in bridges:
        bridge.stop()
    events = [routing_events(bridge) for bridge in bridges]
    asked, _ = reask_figures(evapi_proxy.process.log())
    # Each call asked of one bridge only (a broadcast would give twice as many), plus
    # any asked again; both bridges used.
    assert sum(events) == warm + 60 + asked, (events, asked)
    assert min(events) > 0, events


@EVAPI_CONFIGS
def test_a_bridge_killed_under_load_loses_no_call(evapi_proxy, processes, engine_env, table, sipp):
    carrier = sipp.carrier("carrier_answer", "carrier")
    table.route("33", table.trunk("up", carrier.port))
    victim, survivor = start_bridges(processes, evapi_proxy, engine_env, 2)
    warm_up(sipp, evapi_proxy)
    calls = RATE * SECONDS

    timer = later(KILL_AFTER, lambda: os.killpg(victim.popen.pid, signal.SIGKILL))
    try:
        result = sipp.call(evapi_proxy.port, "33123", calls=calls, rate=RATE, hold_ms=50)
    finally:
        timer.cancel()

    assert not victim.running
    assert result.returncode == 0, result.describe()
    assert result.finals == [200] * calls, result.describe()
    log = evapi_proxy.process.log()
    assert "disconnected (1 connected)" in log
    asked, late = reask_figures(log)
    figures(f"{evapi_proxy.path}, one of two bridges SIGKILLed", calls, result.seconds, asked, late)
    # Every call asked again was answered by the survivor, within the rest of the budget.
    assert len(late) == asked, (asked, late)
    assert all(ms < ENGINE_TIMEOUT_MS - ENGINE_RETRY_MS for ms in late), late
    survivor.stop()
    assert routing_events(survivor) >= calls // 2


@EVAPI_CONFIGS
def test_a_hung_bridge_is_covered_by_the_retry(evapi_proxy, processes, engine_env, table, sipp):
    """SIGSTOP: the connection stays open, the events go unanswered."""
    carrier = sipp.carrier("carrier_answer", "carrier")
    table.route("33", table.trunk("up", carrier.port))
    hung, survivor = start_bridges(processes, evapi_proxy, engine_env, 2)
    warm_up(sipp, evapi_proxy)
    # Kept short: a stopped bridge does not read, and once the socket buffers are full
    # Kamailio's EVAPI dispatcher would block on its write (docs/multihost.md).
    rate, seconds = 100, 5
    calls = rate * seconds

    stop = later(1.0, lambda: os.killpg(hung.popen.pid, signal.SIGSTOP))
    resume = later(4.0, lambda: os.killpg(hung.popen.pid, signal.SIGCONT))
    try:
        result = sipp.call(evapi_proxy.port, "33123", calls=calls, rate=rate, hold_ms=50)
    finally:
        stop.cancel()
        resume.cancel()
        os.killpg(hung.popen.pid, signal.SIGCONT)

    assert result.returncode == 0, result.describe()
    assert result.finals == [200] * calls, result.describe()
    asked, late = reask_figures(evapi_proxy.process.log())
    figures(
        f"{evapi_proxy.path}, one of two bridges hung (SIGSTOP) for 3 s",
        calls, result.seconds, asked, late,
    )  # fmt: skip
    assert asked > 0
    survivor.stop()
    hung.stop()


class SlowEngine:
    """An EVAPI client that answers every routing event, correctly, after `delay` s:
    an engine that is alive but slower than ENGINE_RETRY_MS (an overload)."""

    def __init__(self, port: int, carrier_port: int, delay: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.settimeout(None)
        self.delay = delay
        self.route = {"uri": f"sip:33123@{HOST}:{carrier_port}"}
        self.events = 0
        self.due: queue.Queue = queue.Queue()
        self.threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._answer, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.sock.recv(65536):
                buffer += chunk
                while b":" in buffer:
                    size, _, rest = buffer.partition(b":")
                    if len(rest) < int(size) + 1:
                        break
                    event, buffer = json.loads(rest[: int(size)]), rest[int(size) + 1 :]
                    if "tindex" in event:  # not an outcome event
                        self.events += 1
                        self.due.put((time.monotonic() + self.delay, event))
        self.due.put(None)

    def _answer(self) -> None:
        while (item := self.due.get()) is not None:
            at, event = item
            time.sleep(max(0.0, at - time.monotonic()))
            answer = {
                "version": "1.0",
                "success": True,
                "routing": "serial",
                "routes": [self.route],
                "xtra": {"tindex": event["tindex"], "tlabel": event["tlabel"]},
            }
            payload = json.dumps(answer).encode()
            with contextlib.suppress(OSError):
                self.sock.sendall(b"%d:%s," % (len(payload), payload))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for thread in self.threads:
            thread.join(2)


@pytest.mark.parametrize("path", ["evapi", kemi_param("kemi-evapi")])
def test_engines_that_are_all_slow_are_not_asked_every_call_twice(path, start_kamailio, sipp):
    """Both engines answer after 600 ms (an overload, not a death): every call passes
    ENGINE_RETRY_MS, but the second asks do not double the engines' load: once each
    engine has been late it is suspect, a call with no other engine left waits for
    its first one, and the retry budget (100 at once, then one per ten calls
    answered) bounds the rest. Every call is routed."""
    carrier = sipp.carrier("carrier_answer", "carrier")
    kamailio = start_kamailio(path)
    engines = []
    try:
        for n in (1, 2):
            seen = len(kamailio.process.log())
            engines.append(SlowEngine(kamailio.evapi_port, carrier.port, delay=0.6))
            kamailio.process.wait_for_log(f"({n} connected)", after=seen)
        calls = 300
        result = sipp.call(kamailio.port, "33123", calls=calls, rate=50, hold_ms=0)
    finally:
        for engine in engines:
            engine.close()

    assert result.returncode == 0, result.describe()
    assert result.finals == [200] * calls, result.describe()
    log = kamailio.process.log()
    asked, _ = reask_figures(log)
    waited = log.count("waiting for it (no other engine, or the retry budget is spent)")
    events = sum(engine.events for engine in engines)
    print(
        f"\n{path}, two engines answering after 600 ms: {calls} calls, {events} events sent, "
        f"{asked} asked again, {waited} waited for their first engine; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    assert asked + waited == calls
    assert asked <= 100 + calls // 10 + 5, (asked, waited)
    assert events == calls + asked


# --- HTTP -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["http", HTTP_ASYNC, kemi_param("kemi-http")])
def test_http_second_engine_takes_over_when_the_first_dies(
    path, start_kamailio, processes, engine_env, web_server, kamailio_token, table, sipp
):
    carrier = sipp.carrier("carrier_answer", "carrier")
    table.route("33", table.trunk("up", carrier.port))
    engines = []
    for n in (1, 2):
        port = free_port()
        engine = processes.start(
            f"engine-{n}",
            http_engine_argv(f"{HOST}:{port}", workers=2),
            cwd=BASE_DIR,
            env=engine_env,
        )
        url = f"http://{HOST}:{port}"
        engine.wait_until(lambda url=url: http_ok(f"{url}/healthz"), what=f"engine {n} /healthz")
        engines.append((engine, url))
    (first, first_url), (_, second_url) = engines
    proxy = start_kamailio(
        path,
        env={"KAMAILIO_ENGINE_TOKEN": kamailio_token},
        ENGINE_URL=f"{first_url}/api/v1/kamailio/rtjson",
        ENGINE_URL2=f"{second_url}/api/v1/kamailio/rtjson",
        OUTCOME_URL=f"{web_server.url}/api/v1/kamailio/events",
        ENGINE_TOKEN_FROM_ENV=1,
        # http_client blocks a SIP worker per query.
        SIP_WORKERS=4,
    )
    # Modest: the surviving engine (two sync workers) then takes every call, on a
    # test machine that may be busy with other work.
    rate, seconds = 50, 6
    calls = rate * seconds

    timer = later(2.0, lambda: os.killpg(first.popen.pid, signal.SIGKILL))
    try:
        result = sipp.call(proxy.port, "33123", calls=calls, rate=rate, hold_ms=50)
    finally:
        timer.cancel()

    assert not first.running
    assert result.returncode == 0, result.describe()
    assert result.finals == [200] * calls, result.describe()
    retried = proxy.process.log().count("asking the other one")
    load = os.getloadavg()
    print(
        f"\nHTTP ({path}), first engine SIGKILLed: {calls} calls in {result.seconds:.1f} s, "
        f"{retried} sent on to the other engine; load average {load[0]:.2f}",
        file=sys.stdout,
    )
    assert retried > 0
