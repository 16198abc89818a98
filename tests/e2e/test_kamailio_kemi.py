"""The KEMI (Python) config, kamailio-kemi.cfg + kemi_routing.py, in each engine mode.

The routing cases run through it in test_kamailio_routing.py (`proxy`); here
is what is particular to it: the config check of each mode, the fast 503s when the
engine is absent, broken or silent, and the outcome events it sends back.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading

import pytest

from tests.e2e.processes import HOST, free_port
from tests.e2e.services import (
    APP_PYTHON3_MISSING,
    CONFIGS,
    KEMI_MODES,
    KEMI_PATHS,
    KEMI_SCRIPT,
    app_python3_installed,
    http_async_module_path,
    kemi_param,
)

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"end-to-end tests need {' and '.join(_missing)} on PATH", allow_module_level=True)
if not app_python3_installed():
    pytest.skip(APP_PYTHON3_MISSING, allow_module_level=True)

# Imported after the skips: these modules skip themselves too without Kamailio.
from tests.e2e import test_kamailio_outcomes as native  # noqa: E402
from tests.e2e.test_kamailio_outcomes import wait_for_figures  # noqa: E402
from tests.e2e.test_kamailio_routing import (  # noqa: E402
    FAST,
    BrokenEngine,
    evapi_without_a_bridge,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def check(*defines: str) -> subprocess.CompletedProcess:
    argv = ["kamailio", "-c", "-f", str(CONFIGS["kemi-http"])]
    for define in defines:
        argv += ["-A", define]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("path", sorted(KEMI_MODES))
def test_the_config_checks_in_each_mode(path):
    """`kamailio -c` checks the native part (modules, parameters) of each mode. It does
    not load the Python script: the other tests here start it."""
    defines = [KEMI_MODES[path], f'KEMI_SCRIPT="{KEMI_SCRIPT}"']
    if path == "kemi-http":
        module_path = http_async_module_path()
        if module_path is None:
            pytest.skip("http_async_client is not installed")
        defines.append(f'MODULES_DIR="{module_path}"')

    done = check(*defines)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "config file ok" in done.stdout + done.stderr


def test_two_engine_modes_at_once_are_refused():
    done = check("ENGINE_MODE_EVAPI", "ENGINE_MODE_INPROCESS", f'KEMI_SCRIPT="{KEMI_SCRIPT}"')

    assert done.returncode != 0
    assert "already defined: ENGINE_MODE" in done.stderr


# --- The engine is absent, broken or silent: a fast 503, never a 408 -------------------


@pytest.mark.parametrize("path", [kemi_param("kemi-http"), kemi_param("kemi-inprocess")])
def test_an_absent_engine_gets_calls_a_fast_503(path, start_kamailio, sipp):
    if path == "kemi-http":
        # Nothing listens there: connection refused.
        kamailio = start_kamailio(
            path, ENGINE_URL=f"http://{HOST}:{free_port()}/api/v1/kamailio/rtjson"
        )
        expected = "routing engine unreachable"
    else:
        # Neither the project nor its virtualenv where the config says (nor on the
        # PYTHONPATH): no engine in any worker.
        kamailio = start_kamailio(
            path, env={"PYTHONPATH": ""}, ENGINE_PROJECT_DIR="/nonexistent", ENGINE_PYTHONPATH=""
        )
        expected = "in-process routing engine could not be imported"

    result = sipp.call(kamailio.port, "33123")

    assert result.finals == [503, 503], result.describe()
    assert result.seconds < FAST, result.describe()
    assert expected in kamailio.process.log()


def test_evapi_without_a_bridge_gets_calls_a_fast_503(start_kamailio, start_bridge, table, sipp):
    evapi_without_a_bridge("kemi-evapi", start_kamailio, start_bridge, table, sipp)


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        ({"version": "1.0"}, "routing engine answer unusable (no success field)"),
        ({"success": True, "routing": "sideways", "routes": []}, "unknown routing 'sideways'"),
        ({"success": True, "routing": "serial", "routes": []}, "no usable routes"),
        (None, "did not answer"),
    ],
    ids=["no-success-field", "unknown-routing", "no-routes", "no-answer"],
)
def test_evapi_engine_that_does_not_answer_rtjson_gets_the_call_a_fast_503(
    answer, logged, start_kamailio, sipp
):
    # No answer: each call waits ENGINE_TIMEOUT_MS (1 s), not the 5 s fr_timer.
    limit = FAST if answer is not None else FAST + 1.0
    kamailio = start_kamailio("kemi-evapi", ENGINE_TIMEOUT_MS=1000)
    seen = len(kamailio.process.log())
    engine = BrokenEngine(kamailio.evapi_port, answer)
    try:
        kamailio.process.wait_for_log("routing engine connected from", after=seen)
        result = sipp.call(kamailio.port, "33123")
    finally:
        engine.close()

    assert result.finals == [503, 503], result.describe()
    assert result.seconds < limit, result.describe()
    assert logged in kamailio.process.log()


class BrokenHttpEngine:
    """An HTTP server on 127.0.0.1 that answers every POST 200 with a fixed body: an
    engine that answers, but not with {"rtjson": <rtjson document>}. It keeps the
    requests it got (JSON)."""

    def __init__(self, body: bytes) -> None:
        # The request bodies received, as JSON.
        self.requests: list = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                requests.append(json.loads(received))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/rtjson"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(2)


@pytest.mark.parametrize("path", [kemi_param("kemi-http")])
@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"decision": "none"}', b'{"rtjson": {"version": "1.0"}}'],
    ids=["not-json", "no-rtjson", "no-success-field"],
)
def test_http_answer_that_is_not_rtjson_gets_the_call_a_fast_503(path, body, start_kamailio, sipp):
    engine = BrokenHttpEngine(body)
    try:
        kamailio = start_kamailio(path, ENGINE_URL=engine.url)
        result = sipp.call(kamailio.port, "33123")
    finally:
        engine.close()

    assert result.finals == [503, 503], result.describe()
    assert result.seconds < FAST, result.describe()
    assert "routing engine answer unusable" in kamailio.process.log()


@pytest.mark.parametrize("path", [kemi_param("kemi-http")])
def test_the_engine_request_has_the_native_configs_fields(path, start_kamailio, sipp):
    """The same INVITE through kamailio-http.cfg (http_client) and the KEMI script: the
    same JSON fields, values and nulls (but the call's own ids and Kamailio's port)."""
    engine = BrokenHttpEngine(b"{}")
    caller_port = free_port()
    try:
        for config in ("http", path):
            kamailio = start_kamailio(config, ENGINE_URL=engine.url)
            result = sipp.call(kamailio.port, "33123", calls=1, port=caller_port)
            assert result.finals == [503], result.describe()
            kamailio.process.stop()
    finally:
        engine.close()

    native, kemi = engine.requests
    for request in (native, kemi):
        assert request.pop("call_id")
        assert request.pop("from_tag")
        for field in ("to_uri", "ruri"):
            request[field] = request[field].rsplit(":", 1)[0]
    assert list(kemi) == list(native)  # the same fields, in the same order
    assert kemi == native
    assert native["from_name"] == "Alice"
    assert native["to_name"] is None


# --- Outcome events ----------------------------------------------------------------------


# `proxy` (conftest.py) in the KEMI modes only: the native configs have theirs in
# test_kamailio_outcomes.py.
@pytest.mark.parametrize("proxy", KEMI_PATHS, indirect=True)
def test_attempts_and_ends_reach_the_engine(proxy, table, sipp):
    """Route 33: a trunk that answers 503, then one that answers (serial failover); one
    call, hung up after 1 s: an attempt for each trunk and the answered call's end."""
    down = sipp.carrier("carrier_reject", "carrier-down")
    up = sipp.carrier("carrier_answer", "carrier-up")
    down_id = table.trunk("down", down.port)
    up_id = table.trunk("up", up.port)
    table.route("33", down_id, up_id)

    result = sipp.call(proxy.port, "33123", calls=1, hold_ms=1000)

    assert result.finals == [200], result.describe()
    per_trunk, codes = wait_for_figures(
        lambda per_trunk, codes: (
            per_trunk.get(up_id, {}).get("ended", 0) >= 1
            and per_trunk.get(down_id, {}).get("attempts", 0) >= 1
        )
    )
    assert per_trunk[down_id]["attempts"] == 1, per_trunk
    assert codes[(down_id, 503)] == 1, codes
    assert per_trunk[up_id]["attempts"] == per_trunk[up_id]["answered"] == 1, per_trunk
    assert codes[(up_id, 200)] == 1, codes
    assert per_trunk[up_id]["ended"] == 1, per_trunk
    assert 0.9 <= per_trunk[up_id]["duration_s"] <= 2.0, per_trunk
    # The carrier rang (180) before answering: a post-dial delay.
    assert per_trunk[up_id]["pdd_count"] == 1, per_trunk


# --- Per-trunk caps: the script's own code (cap_check, serial_free_route, the branch
# dropped in the branch route), the same whatever the engine mode: one mode here; the
# native configs' caps cases are in test_kamailio_outcomes.py. ---------------------


def _again_through(path: str, test):
    """A native config's test run again through the KEMI config in `path`: the same
    case, checking the script's own code for it, not a copy of the test."""

    @functools.wraps(test)
    def run(proxy, table, sipp):
        test(proxy, table, sipp)

    run.pytestmark = [pytest.mark.parametrize("proxy", [kemi_param(path)], indirect=True)]
    return run


test_a_trunk_at_max_calls_sends_the_next_call_to_the_next_trunk = _again_through(
    "kemi-evapi", native.test_a_trunk_at_max_calls_sends_the_next_call_to_the_next_trunk
)
test_parallel_routing_drops_a_branch_at_its_cap = _again_through(
    "kemi-evapi", native.test_parallel_routing_drops_a_branch_at_its_cap
)
