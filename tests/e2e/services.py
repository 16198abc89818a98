"""The project's own services as the end-to-end suite runs them, and the Kamailio configs.

gunicorn, the bridge and management commands run the production settings
against the test database of this pytest process (its name is read from the live
connection settings), so they see the rows the test commits.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.e2e.processes import HOST, Process
from tests.servers import child_database_url

BASE_DIR = Path(settings.BASE_DIR)
CONFIG_DIR = BASE_DIR / "deploy" / "kamailio"
# Kamailio "paths": the HTTP config with http_client (what Debian packages) or with
# http_async_client (the production default, when installed), and the EVAPI config.
CONFIGS = {
    "http": CONFIG_DIR / "kamailio-http.cfg",
    "http-async": CONFIG_DIR / "kamailio-http.cfg",
    "evapi": CONFIG_DIR / "kamailio-evapi.cfg",
    # --- KEMI (Python) config: one file, the engine mode is a define (issue 18) ---
    "kemi-http": CONFIG_DIR / "kamailio-kemi.cfg",
    "kemi-evapi": CONFIG_DIR / "kamailio-kemi.cfg",
    "kemi-inprocess": CONFIG_DIR / "kamailio-kemi.cfg",
    # --- end KEMI ---
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


# --- KEMI (Python) config (issue 18) ------------------------------------------------
KEMI_SCRIPT = CONFIG_DIR / "kemi_routing.py"
# The -A define that selects each KEMI path's engine mode.
KEMI_MODES = {
    "kemi-http": "ENGINE_MODE_HTTP",
    "kemi-evapi": "ENGINE_MODE_EVAPI",
    "kemi-inprocess": "ENGINE_MODE_INPROCESS",
}


def app_python3_installed() -> bool:
    """Whether Kamailio's app_python3 (Debian: kamailio-python3-modules) is installed."""
    return any(
        (Path(d) / "app_python3.so").exists()
        for d in [*glob.glob("/usr/lib/*/kamailio/modules"), "/usr/lib64/kamailio/modules",
                  "/usr/local/lib64/kamailio/modules", "/usr/local/lib/kamailio/modules"]
    )  # fmt: skip


APP_PYTHON3_MISSING = (
    "Kamailio's app_python3 is not installed (Debian: kamailio-python3-modules); "
    "the KEMI config needs it"
)


def kemi_param(path: str):
    """A KEMI path as a fixture parameter, skipped before any setup where it cannot run:
    without app_python3, and (kemi-http) without http_async_client."""
    marks = [pytest.mark.skipif(not app_python3_installed(), reason=APP_PYTHON3_MISSING)]
    if path == "kemi-inprocess":
        marks.append(
            pytest.mark.skipif(
                not (BASE_DIR / "kamailio" / "inprocess.py").exists(),
                reason="kamailio.inprocess (the in-process engine) is not in this checkout",
            )
        )
    if path == "kemi-http":
        marks.append(
            pytest.mark.skipif(http_async_module_path() is None, reason=HTTP_ASYNC_MISSING)
        )
    return pytest.param(path, marks=marks)


KEMI_PATHS = [kemi_param(path) for path in KEMI_MODES]


# --- end KEMI ---------------------------------------------------------------------------


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
        DATABASE_URL=child_database_url(),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        # Outcome events reach the database within a fraction of a second.
        OUTCOMES_FLUSH_SECONDS="0.2",
        # A half-open trunk is tried by every call, so its recovery takes one call; the
        # share itself (a hash of the Call-ID) is unit-tested in tests/routing/test_health.py.
        ROUTING_HEALTH_PROBE_PERCENT="100",
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


@dataclass
class WebServer:
    url: str
    process: Process


def http_ok(url: str) -> bool:
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


@dataclass
class Kamailio:
    path: str
    port: int
    process: Process
    evapi_port: int | None = None


class Table:
    """The tenant "e2e" (calls from 127.0.0.1) and its route table, made through the REST API."""

    def __init__(self, api: Api) -> None:
        self.api = api
        api.post("tenants", {"name": "E2E", "slug": "e2e"})
        api.post("tenant-sources", {"tenant": "e2e", "network": "127.0.0.1/32"})
        self.carrier = api.post("carriers", {"tenant": "e2e", "name": "SIPp carriers"})["id"]
        # The outsider: another tenant whose default route answers 480. If its table
        # ever served tenant e2e's calls, a call with no route would get 480, not 404.
        api.post("tenants", {"name": "Other", "slug": "other"})
        api.post("tenant-sources", {"tenant": "other", "network": "10.0.0.0/8"})
        api.post(
            "prefixes",
            {"tenant": "other", "prefix": "", "action": "reject", "reject_code": 480,
             "reject_reason": "Other Tenant"},
        )  # fmt: skip

    def trunk(self, name: str, port: int, **fields) -> int:
        body = {"carrier": self.carrier, "name": name, "host": HOST, "port": port, **fields}
        return self.api.post("trunks", body)["id"]

    def route(self, prefix: str, *trunks: int, mode: str = "serial") -> None:
        targets = [
            {"trunk": trunk, "priority": n, "weight": 100} for n, trunk in enumerate(trunks, 1)
        ]
        self.api.post(
            "prefixes",
            {"tenant": "e2e", "prefix": prefix, "action": "route", "routing_mode": mode,
             "targets": targets},
        )  # fmt: skip

    def action(self, prefix: str, action: str, **fields) -> None:
        self.api.post("prefixes", {"tenant": "e2e", "prefix": prefix, "action": action, **fields})
