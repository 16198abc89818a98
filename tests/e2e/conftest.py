"""Fixtures of the end-to-end suite: the project's web server and bridge, Kamailio, SIPp.

Everything binds 127.0.0.1 on free ports and is stopped when its fixture ends,
also when the test fails. gunicorn and the bridge run the production settings
against the test database of this pytest process (its name is read from the live
connection settings), so they see the rows the test commits.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from tests.e2e.processes import (
    HOST,
    Process,
    ProcessGroup,
    free_port,
    sip_options_answered,
)
from tests.e2e.sipp import Sipp

BASE_DIR = Path(settings.BASE_DIR)
CONFIG_DIR = BASE_DIR / "deploy" / "kamailio"
# Kamailio "paths": the HTTP config with http_client (what Debian packages) or with
# http_async_client (the production default, when installed), and the EVAPI config.
CONFIGS = {
    "http": CONFIG_DIR / "kamailio-http.cfg",
    "http-async": CONFIG_DIR / "kamailio-http.cfg",
    "evapi": CONFIG_DIR / "kamailio-evapi.cfg",
}


def http_async_module_path() -> str | None:
    """Kamailio's mpath for the http_async_client variant, or None when it is not installed.

    Debian 12 does not package http_async_client; E2E_KAMAILIO_MODULES may name a
    directory with a build of it, searched before Kamailio's own module directory.
    """
    candidates = [
        os.environ.get("E2E_KAMAILIO_MODULES", ""),
        *glob.glob("/usr/lib/*/kamailio/modules"),
        "/usr/lib64/kamailio/modules",
        "/usr/local/lib64/kamailio/modules",
        "/usr/local/lib/kamailio/modules",
    ]
    directories = [d for d in candidates if d and Path(d).is_dir()]
    if any((Path(d) / "http_async_client.so").exists() for d in directories):
        return ":".join(directories)
    return None


HTTP_ASYNC_MISSING = (
    "http_async_client is not installed (Debian 12 does not package it); "
    "set E2E_KAMAILIO_MODULES to a directory with a build of it"
)
# The "http-async" parameter of a test, skipped before any setup when the module is missing.
HTTP_ASYNC = pytest.param(
    "http-async",
    marks=pytest.mark.skipif(http_async_module_path() is None, reason=HTTP_ASYNC_MISSING),
)


def database_url() -> str:
    """DATABASE_URL of the test database this pytest process created."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    if "postgresql" not in db["ENGINE"]:
        raise NotImplementedError(f"the e2e suite knows SQLite and PostgreSQL, not {db['ENGINE']}")
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{quote(db['NAME'])}"


def service_env(**extra: str) -> dict[str, str]:
    """Environment of the project's own processes: production settings, the test database."""
    # Nothing of the test process's Django setup leaks in (the browser suite sets
    # DJANGO_ALLOW_ASYNC_UNSAFE for itself, for instance).
    unwanted = ("DJANGO_SETTINGS_MODULE", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in unwanted}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="e2e-only-secret-key-not-for-production",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url(),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def manage(*args: str, timeout: float = 60) -> str:
    """Run a management command against the test database; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


# --- The web server (one per module: gunicorn starts in about a second) --------------


@dataclass
class WebServer:
    url: str
    process: Process


@pytest.fixture(scope="module")
def web_server(django_db_setup, django_db_blocker, tmp_path_factory):
    processes = ProcessGroup(tmp_path_factory.mktemp("web"))
    try:
        port = free_port()
        process = processes.start(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "-b", f"{HOST}:{port}", "-w", "2", "--graceful-timeout", "2"],
            cwd=BASE_DIR,
            env=service_env(),
        )  # fmt: skip
        url = f"http://{HOST}:{port}"
        process.wait_until(lambda: _http_ok(f"{url}/healthz"), what="gunicorn /healthz answering")
        yield WebServer(url, process)
    finally:
        processes.stop_all()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 (http on loopback)
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Api:
    """The project's REST API, as a superuser with a DRF token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def post(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (http on loopback)
            f"{self.base_url}/api/v1/{path}",
            data=json.dumps(data).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Token {self.token}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return json.load(answer)
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"POST /api/v1/{path} {data} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from None


@pytest.fixture
def api(transactional_db, web_server) -> Api:
    from rest_framework.authtoken.models import Token

    from tests.factories import make_operator

    admin = make_operator("e2e-admin", None, is_superuser=True)
    return Api(web_server.url, Token.objects.create(user=admin).key)


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


@dataclass
class Kamailio:
    path: str
    port: int
    process: Process
    evapi_port: int | None = None


@pytest.fixture
def start_kamailio(processes):
    """start_kamailio("http" | "http-async" | "evapi", NAME=value...): a shipped config.

    Keyword arguments become -A defines (strings quoted for Kamailio); `env` adds
    environment variables. "http" runs
    the HTTP config's http_client variant; "http-async" its default,
    http_async_client, and skips the test when that module is not installed.
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
        if path == "evapi":
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
def start_bridge(processes, web_server):
    """start_bridge(kamailio): `manage.py run_evapi_bridge` connected to its EVAPI socket."""

    def start(kamailio: Kamailio) -> Process:
        assert kamailio.evapi_port is not None, "the bridge needs the EVAPI config"
        seen = len(kamailio.process.log())
        process = processes.start(
            "bridge",
            [sys.executable, "manage.py", "run_evapi_bridge",
             "--connect", f"{HOST}:{kamailio.evapi_port}", "--stats-interval", "0"],
            cwd=BASE_DIR,
            env=service_env(),
        )  # fmt: skip
        process.wait_for_log(f"connected to {HOST}:{kamailio.evapi_port}")
        # Kamailio counted it: calls are no longer refused for want of an engine.
        kamailio.process.wait_for_log("routing engine connected from", after=seen)
        return process

    return start
