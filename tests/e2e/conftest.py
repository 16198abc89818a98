"""Fixtures of the end-to-end suite: the project's web server and bridge, Kamailio, SIPp.

Everything binds 127.0.0.1 on free ports and is stopped when its fixture ends,
also when the test fails. How each service is run is in services.py.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import tempfile
import time
from collections.abc import Callable

import pytest

from tests.e2e.processes import (
    HOST,
    Process,
    ProcessGroup,
    free_port,
    sip_options_answered,
)
from tests.e2e.services import (
    APP_PYTHON3_MISSING,  # KEMI
    BASE_DIR,
    CONFIGS,
    HTTP_ASYNC,
    HTTP_ASYNC_MISSING,
    KEMI_MODES,  # KEMI
    KEMI_PATHS,  # KEMI
    KEMI_SCRIPT,  # KEMI
    Api,
    Kamailio,
    Table,
    WebServer,
    app_python3_installed,  # KEMI
    http_async_module_path,
    http_ok,
    manage,
    service_env,
)
from tests.e2e.sipp import Sipp

# --- The web server (one per module: gunicorn starts in about a second) --------------


# The engines' outcome aggregators write every OUTCOMES_FLUSH_SECONDS (0.2 s, services.py).
SETTLE_SECONDS = 0.5


@pytest.fixture(autouse=True)
def settled_before_flush(transactional_db):
    """Let the servers that outlive a test finish writing before its tables are emptied.

    The web server and the call-path server run for a whole module; events a test's
    Kamailio posted just before it stopped are written by their aggregators a moment
    later, and a write that holds a row lock while the teardown's TRUNCATE waits for
    the table locks deadlocks it (seen in CI). This fixture is torn down after the
    test's own processes (set up later, stopped first) and before the database flush
    (set up earlier, run last).
    """
    yield
    time.sleep(SETTLE_SECONDS)


@pytest.fixture(scope="module")
def engine_env() -> dict[str, str]:
    """The environment of the engine's processes (gunicorn, the bridge); a test module
    overrides it to run another configuration (e.g. ROUTING_TABLE)."""
    return service_env()


def _serving(name: str, argv: Callable[[str], list[str]], env: dict[str, str], directory):
    """A server of the project on a free port (`argv(bind)`), until /healthz answers;
    yields a WebServer and stops it at the end."""
    processes = ProcessGroup(directory)
    try:
        port = free_port()
        process = processes.start(name, argv(f"{HOST}:{port}"), cwd=BASE_DIR, env=env)
        url = f"http://{HOST}:{port}"
        process.wait_until(lambda: http_ok(f"{url}/healthz"), what=f"{name} /healthz answering")
        yield WebServer(url, process)
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def web_server(engine_env, django_db_setup, django_db_blocker, tmp_path_factory):
    """The admin and the REST API (gunicorn), where Kamailio also posts outcome events."""
    yield from _serving(
        "gunicorn",
        lambda bind: [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "deploy/gunicorn.conf.py",
            "-b",
            bind,
            "-w",
            "2",
            "--graceful-timeout",
            "2",
        ],
        engine_env,
        tmp_path_factory.mktemp("web"),
    )


@pytest.fixture(scope="module")
def rtjson_server(engine_env, django_db_setup, django_db_blocker, tmp_path_factory):
    """The call path as production runs it: `manage.py serve_rtjson` (granian), its own port."""
    yield from _serving(
        "serve_rtjson",
        lambda bind: [
            sys.executable,
            "manage.py",
            "serve_rtjson",
            "--bind",
            bind,
            "--workers",
            "1",
        ],
        engine_env,
        tmp_path_factory.mktemp("rtjson"),
    )


@pytest.fixture
def api(transactional_db, web_server) -> Api:
    from api.models import issue_user_token
    from tests.factories import make_operator

    admin = make_operator("e2e-admin", None, is_superuser=True)
    return Api(web_server.url, issue_user_token(user=admin)[0])


@pytest.fixture
def kamailio_token(transactional_db, web_server) -> str:
    """A Kamailio token made the way an operator makes one, limited to loopback."""
    key = manage("create_kamailio_token", "e2e-kamailio", "--network", "127.0.0.1/32").strip()
    assert key, "create_kamailio_token printed no key"
    assert "\n" not in key, f"create_kamailio_token printed more than a key: {key!r}"
    return key


# --- Per-test processes: Kamailio, the bridge, SIPp ---------------------------------


@pytest.fixture
def processes(tmp_path):
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def sipp(processes) -> Sipp:
    return Sipp(processes)


@pytest.fixture
def start_kamailio(processes):
    """start_kamailio("http" | "http-async" | "evapi", NAME=value...): a shipped config.

    Keyword arguments become -A defines (strings quoted for Kamailio); `env` adds
    environment variables. "http" runs
    the HTTP config's http_client variant; "http-async" its default,
    http_async_client, and skips the test when that module is not installed.
    "kemi-http" | "kemi-evapi" | "kemi-inprocess": the KEMI (Python) config in that
    engine mode; skipped without app_python3 (kemi-http: without http_async_client).
    """
    run_dirs: list[str] = []

    def start(path: str, env: dict[str, str] | None = None, **defines: str | int) -> Kamailio:
        # A short directory: the ctl unix socket path must fit in 108 bytes.
        run_dir = tempfile.mkdtemp(prefix="kam-", dir="/tmp")
        run_dirs.append(run_dir)
        port = free_port()
        values: dict[str, str | int] = {
            "LISTEN_PORT": port,
            "RUN_DIR": run_dir,
            "CTL_SOCKET": f"unix:{run_dir}/ctl",
            "SIP_WORKERS": 2,
        }
        evapi_port = None
        if path in ("evapi", "kemi-evapi"):
            evapi_port = free_port()
            values["EVAPI_BIND"] = f"{HOST}:{evapi_port}"
        values.update(defines)
        argv = ["kamailio", "-f", str(CONFIGS[path]), "-DD", "-E", "-m", "64", "-M", "16",
                "-Y", run_dir, "-w", run_dir]  # fmt: skip
        if path == "http":
            argv += ["-A", "WITH_HTTP_CLIENT"]
        elif path == "http-async":
            module_path = http_async_module_path()
            if module_path is None:
                pytest.skip(HTTP_ASYNC_MISSING)
            values["MODULES_DIR"] = module_path
        # --- KEMI (Python) config: the mode define, the script, its modules ---
        elif path in KEMI_MODES:
            if not app_python3_installed():
                pytest.skip(APP_PYTHON3_MISSING)
            argv += ["-A", KEMI_MODES[path]]
            values.setdefault("KEMI_SCRIPT", str(KEMI_SCRIPT))
            module_path = http_async_module_path()
            if module_path is None and path == "kemi-http":
                pytest.skip(HTTP_ASYNC_MISSING)
            if module_path is not None:
                values.setdefault("MODULES_DIR", module_path)
            if path == "kemi-inprocess":
                values.setdefault("ENGINE_PROJECT_DIR", str(BASE_DIR))
                values.setdefault("ENGINE_PYTHONPATH", ":".join(site.getsitepackages()))
        # --- end KEMI ---
        for name, value in values.items():
            argv += ["-A", f'{name}="{value}"' if isinstance(value, str) else f"{name}={value}"]
        process = processes.start(
            f"kamailio-{path}", argv, cwd=run_dir, env={**os.environ, **(env or {})}
        )
        process.wait_until(
            lambda: sip_options_answered(port), what=f"Kamailio ({path}) answering OPTIONS"
        )
        return Kamailio(path, port, process, evapi_port)

    try:
        yield start
    finally:
        for run_dir in run_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def start_bridge(processes, web_server, engine_env):
    """start_bridge(kamailio, *args): `manage.py run_evapi_bridge` connected to its EVAPI
    socket, with `args` added to its command line."""

    def start(kamailio: Kamailio, *args: str) -> Process:
        assert kamailio.evapi_port is not None, "the bridge needs the EVAPI config"
        seen = len(kamailio.process.log())
        process = processes.start(
            "bridge",
            [sys.executable, "manage.py", "run_evapi_bridge",
             "--connect", f"{HOST}:{kamailio.evapi_port}", "--stats-interval", "0", *args],
            cwd=BASE_DIR,
            env=engine_env,
        )  # fmt: skip
        process.wait_for_log(f"connected to {HOST}:{kamailio.evapi_port}")
        # Kamailio counted it: calls are no longer refused for want of an engine.
        kamailio.process.wait_for_log("routing engine connected from", after=seen)
        return process

    return start


# --- A route table and a Kamailio routing with it, over each transport --------------


@pytest.fixture
def table(api) -> Table:
    return Table(api)


@pytest.fixture(params=["http", HTTP_ASYNC, "evapi", "evapi-nosip", *KEMI_PATHS])
def proxy(request, start_kamailio, start_bridge, web_server) -> Kamailio:
    """Kamailio asking this project over HTTP (serve_rtjson) or EVAPI (the bridge).

    "http-async" (the production HTTP client) runs only where http_async_client is
    installed; Debian's packages have "http" (http_client) and "evapi". Outcome
    events go to the same web server (HTTP) or bridge (EVAPI). "evapi-nosip" (answers
    by datagram) runs for the routing cases only (below), and so do the KEMI config's
    modes ("kemi-http", "kemi-evapi", "kemi-inprocess").
    """
    # --- KEMI ---
    if request.param in KEMI_MODES:
        return start_kemi(request, request.param)
    # --- end KEMI ---
    if request.param.startswith("http"):
        # The token from the environment, as in production (not in `ps`).
        token = request.getfixturevalue("kamailio_token")
        rtjson = request.getfixturevalue("rtjson_server")
        return start_kamailio(
            request.param,
            env={"KAMAILIO_ENGINE_TOKEN": token},
            ENGINE_URL=f"{rtjson.url}/api/v1/kamailio/rtjson",
            OUTCOME_URL=f"{web_server.url}/api/v1/kamailio/events",
            ENGINE_TOKEN_FROM_ENV=1,
        )
    if request.param == "evapi-nosip":
        return start_evapi_nosip(start_kamailio, start_bridge)
    kamailio = start_kamailio("evapi")
    start_bridge(kamailio)
    return kamailio


# --- Proxies only the routing cases run through (test_kamailio_routing.py) ----------
#
# "evapi-nosip": the EVAPI path with answers by nosip datagrams (WITH_NOSIP). The other
# modules that take `proxy` deselect these parameters: the answer channel is checked by
# the routing cases, not again by every feature (CI time).

ROUTING_ONLY_PROXIES = ["evapi-nosip"]
ROUTING_ONLY_MODULES = {"tests.e2e.test_kamailio_routing"}
# --- KEMI: the KEMI config's modes (issue 18); test_kamailio_kemi.py picks its own ---
ROUTING_ONLY_PROXIES += list(KEMI_MODES)
ROUTING_ONLY_MODULES.add("tests.e2e.test_kamailio_kemi")
# --- end KEMI ---


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("proxy") if callspec is not None else None
        elsewhere = item.module.__name__ not in ROUTING_ONLY_MODULES
        (drop if param in ROUTING_ONLY_PROXIES and elsewhere else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def start_evapi_nosip(start_kamailio, start_bridge, **defines) -> Kamailio:
    """Kamailio WITH_NOSIP and a bridge answering by datagrams to its SIP port."""
    kamailio = start_kamailio("evapi", WITH_NOSIP=1, **defines)
    start_bridge(kamailio, "--nosip", f"{HOST}:{kamailio.port}")
    return kamailio


# --- KEMI (Python) config (issue 18) -------------------------------------------------


def start_kemi(request, path: str) -> Kamailio:
    """kamailio-kemi.cfg in mode `path` (a KEMI_MODES key) with its engine running:
    serve_rtjson (kemi-http), a bridge (kemi-evapi), or inside Kamailio (kemi-inprocess,
    with the engine's environment). Outcome events go to the web server or the bridge."""
    start_kamailio = request.getfixturevalue("start_kamailio")
    if path == "kemi-evapi":
        kamailio = start_kamailio(path)
        request.getfixturevalue("start_bridge")(kamailio)
        return kamailio
    # The token from the environment, as in production (not in `ps`).
    env = {"KAMAILIO_ENGINE_TOKEN": request.getfixturevalue("kamailio_token")}
    defines = {}
    if path == "kemi-inprocess":
        env.update(request.getfixturevalue("engine_env"))
    else:
        rtjson = request.getfixturevalue("rtjson_server")
        defines["ENGINE_URL"] = f"{rtjson.url}/api/v1/kamailio/rtjson"
    web_server = request.getfixturevalue("web_server")
    return start_kamailio(
        path,
        env=env,
        OUTCOME_URL=f"{web_server.url}/api/v1/kamailio/events",
        ENGINE_TOKEN_FROM_ENV=1,
        **defines,
    )


# --- end KEMI ---------------------------------------------------------------------------
