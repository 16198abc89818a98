"""A change is used by every process within a second: real gunicorn and bridge processes.

Two gunicorn servers (two web processes) and an EVAPI bridge run against the test
database with ROUTING_TABLE=compiled; this process changes the route table
through the ORM and asks all three until they answer the new way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from routing.importing import import_prefixes
from routing.models import DialPrefix, Schedule, Trunk
from tests.factories import make_route, make_tenant, make_trunk
from tests.servers import child_database_url, free_tcp_port

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 1.0  # seconds: the promise made in docs/scale.md


def server_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": child_database_url(),
        "SECRET_KEY": "live-test-key",
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "false",
        "ROUTING_TABLE": "compiled",
        "LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def running(*args: str) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        args, cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Web:
    """A keep-alive client of one gunicorn's rtjson endpoint."""

    def __init__(self, port: int, key: str, process: subprocess.Popen) -> None:
        self.port, self.key, self.process = port, key, process
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def code(self, callee: str) -> int:
        body = json.dumps(
            {
                "event": "sip-routing",
                "source_ip": "192.0.2.7",
                "source_port": 5060,
                "call_id": "live",
                "from_name": "",
                "from_uri": "sip:100@pbx.example.net",
                "from_tag": "f",
                "to_name": "",
                "to_uri": f"sip:{callee}@example.net",
                "to_tag": "",
            }
        )
        headers = {"Content-Type": "application/json", "Authorization": f"Token {self.key}"}
        self.conn.request("POST", "/api/v1/kamailio/rtjson", body, headers)
        response = self.conn.getresponse()
        document = json.loads(response.read())
        assert response.status == 200, document
        return document["rtjson"].get("code", 200)

    def wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.code("+33")
                return
            except (OSError, http.client.HTTPException):
                self.conn.close()
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(self.process.stderr.read().decode()[-2000:]) from None
                time.sleep(0.2)


class Kamailio:
    """Kamailio's end of the evapi socket: the bridge connects to it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.label = 0

    def accept(self, process: subprocess.Popen, timeout: float = 60) -> None:
        self.server.settimeout(timeout)
        try:
            self.sock, _ = self.server.accept()
        except TimeoutError:
            raise AssertionError(process.stderr.read1().decode()[-2000:]) from None
        self.sock.settimeout(5)

    def code(self, callee: str) -> int:
        self.label += 1
        event = {"event": "sip-routing", "tindex": 1, "tlabel": self.label, "caller": "100"}
        payload = json.dumps({**event, "callee": callee}).encode()
        self.sock.sendall(b"%d:%s," % (len(payload), payload))
        while True:
            length, sep, rest = self.buffer.partition(b":")
            if sep and len(rest) > int(length):
                answer = json.loads(rest[: int(length)])
                self.buffer = rest[int(length) + 1 :]
                assert answer["xtra"]["tlabel"] == self.label
                return answer.get("code", 200)
            chunk = self.sock.recv(65536)
            assert chunk, "the bridge closed the connection"
            self.buffer += chunk

    def close(self) -> None:
        if self.sock:
            self.sock.close()
        self.server.close()


@pytest.fixture
def live(transactional_db):
    """tenant-a's route 33 to two trunks, served by two gunicorns and a bridge."""
    tenant = make_tenant("tenant-a", "192.0.2.0/24")
    primary = make_trunk(tenant, "a-primary", host="192.0.2.101")
    backup = make_trunk(tenant, "a-backup", host="192.0.2.102")
    route = make_route(tenant, "33", primary, backup)
    out = io.StringIO()
    call_command("create_kamailio_token", "live-test", stdout=out)
    key = out.getvalue().strip()
    kamailio = Kamailio()
    ports = [free_tcp_port(), free_tcp_port()]
    gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers", "1"]
    bridge = [sys.executable, "manage.py", "run_evapi_bridge", "--tenant", "tenant-a"]
    with (
        running(*gunicorn, "--bind", f"127.0.0.1:{ports[0]}") as web1,
        running(*gunicorn, "--bind", f"127.0.0.1:{ports[1]}") as web2,
        running(*bridge, "--connect", f"127.0.0.1:{kamailio.port}", "--workers", "2") as evapi,
    ):
        webs = [Web(ports[0], key, web1), Web(ports[1], key, web2)]
        try:
            for web in webs:
                web.wait_up()
            kamailio.accept(evapi)
            clients = [*webs, kamailio]
            # Let every process load its compiled table (a background build).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert [client.code("+33612345678") for client in clients] == [200, 200, 200]
                time.sleep(0.1)
            yield {"route": route, "trunks": (primary, backup), "clients": clients}
        finally:
            kamailio.close()


def seconds_until_all(clients, callee: str, expected: int) -> float:
    """How long until every client answers `expected` (and keeps doing so)."""
    started = time.monotonic()
    pending = list(clients)
    while pending:
        pending = [client for client in pending if client.code(callee) != expected]
        if time.monotonic() - started > DEADLINE + 2:
            break
        time.sleep(0.02)
    took = time.monotonic() - started
    for _ in range(5):  # no stale answer afterwards, from any of them
        assert [client.code(callee) for client in clients] == [expected] * len(clients)
    return took


@pytest.mark.skipif(sys.platform != "linux", reason="starts gunicorn and the bridge")
def test_changes_reach_two_web_processes_and_a_bridge_within_a_second(live):
    clients, route = live["clients"], live["route"]

    route.action, route.reject_code, route.reject_reason = "reject", 486, "Busy Here"
    route.save()
    assert seconds_until_all(clients, "+33612345678", 486) < DEADLINE

    # A bulk update (as the admin's enable/disable actions do) and a new prefix.
    DialPrefix.objects.filter(pk=route.pk).update(action="route")
    Trunk.objects.filter(pk__in=[t.pk for t in live["trunks"]]).update(is_active=False)
    assert seconds_until_all(clients, "+33612345678", 503) < DEADLINE

    make_route(route.tenant, "3361", action="reject", reject_code=403)
    assert seconds_until_all(clients, "+33612345678", 403) < DEADLINE

    # An import replaces the whole table (one 'table' change: a background rebuild).
    csv = "prefix,action,reject_code\n336,reject,404\n"
    import_prefixes(lambda: io.StringIO(csv), tenant=route.tenant, replace=True)
    assert seconds_until_all(clients, "+33612345678", 404) < DEADLINE

    # A schedule's change (not its routes') reaches them too: a scheduled route that
    # was out of force comes into force when its window is widened.
    closed = Schedule.objects.create(
        tenant=route.tenant, name="Closed", valid_until=timezone.now() - dt.timedelta(days=1)
    )
    make_route(route.tenant, "336", schedule=closed, action="reject", reject_code=480)
    assert seconds_until_all(clients, "+33612345678", 404) < DEADLINE  # still the fallback
    closed.valid_until = None
    closed.save()
    assert seconds_until_all(clients, "+33612345678", 480) < DEADLINE
