"""The rtjson endpoint and /healthz of a real server while PostgreSQL hangs.

Both servers run as shipped, with DATABASE_URL pointing at a freezing proxy in front
of the test database: granian (`manage.py serve_rtjson`, the production call path,
whose request threads no signal can interrupt) and gunicorn's sync workers (the
admin's server, config.wsgi). One worker, so that every answer's path is known: its
compiled table and its token cache are warm before the freeze. Requests are
sequential, each on a new connection, as Kamailio's http_client sends them.
"""

from __future__ import annotations

import http.client
import io
import json
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.e2e.processes import ProcessGroup
from tests.reliability.conftest import DEADLINE, SLACK
from tests.servers import child_database_url, free_tcp_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform != "linux", reason="starts gunicorn"),
]

ROOT = Path(__file__).resolve().parents[2]
FREEZE = 2.5
HEALTHZ_LIMIT = 1.0  # the promise; the check itself gives up after 0.5 s


def request(port: int, method: str, path: str, body: bytes | None = None, key: str = ""):
    """(seconds, HTTP status, parsed JSON body) of one request on a new connection."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Token {key}"
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return time.monotonic() - started, response.status, json.loads(data)


CALL = json.dumps(
    {
        "event": "sip-routing",
        "source_ip": "192.0.2.7",
        "source_port": 5060,
        "call_id": "hung@pbx.example.net",
        "from_name": "",
        "from_uri": "sip:+33123456789@pbx.example.net",
        "from_tag": "f",
        "to_name": "",
        "to_uri": "sip:+33612345678@sbc.example.net",
        "to_tag": "",
    }
).encode()


SERVERS = {
    "granian": [sys.executable, "manage.py", "serve_rtjson", "--workers", "1"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("kind", ["database", "compiled"])
def test_rtjson_and_healthz_answer_in_time_while_the_database_hangs(
    server, kind, route_a, proxy, tmp_path
):
    out = io.StringIO()
    call_command("create_kamailio_token", "hung-test", stdout=out)
    key = out.getvalue().strip()
    direct = child_database_url()
    host_port = direct.split("@", 1)[1].split("/", 1)[0]
    port = free_tcp_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": direct.replace(f"@{host_port}/", f"@127.0.0.1:{proxy.port}/", 1),
        "SECRET_KEY": "hung-test-key",
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "false",
        "ROUTING_TABLE": kind,
        "LOG_LEVEL": "WARNING",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "RTJSON_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    group = ProcessGroup(tmp_path)
    try:
        web = group.start(server, SERVERS[server], cwd=ROOT, env=env)
        web.wait_until(lambda: _healthy(port), what=f"{server} /healthz answering", timeout=30)
        post = ("POST", "/api/v1/kamailio/rtjson", CALL, key)
        for _ in range(3):  # warm: token looked up, tables loaded
            _, status, body = request(port, *post)
            assert status == 200
            assert body["rtjson"]["success"] is True, body

        proxy.freeze()
        frozen_at = time.monotonic()
        calls, probes = [], []
        while time.monotonic() - frozen_at < FREEZE:
            for _ in range(3):
                calls.append(request(port, *post))
            probes.append(request(port, "GET", "/healthz"))
        assert proxy.frozen
        for seconds, status, body in calls:
            answer = body["rtjson"]
            assert status == 200
            assert seconds <= DEADLINE + SLACK, (seconds, answer)
            if kind == "compiled":
                assert answer["success"] is True, answer  # from memory
            else:
                assert (answer["code"], answer["reason"]) == (503, "Routing Database Unavailable")
        for seconds, status, body in probes:
            assert status == 503, body
            assert seconds <= HEALTHZ_LIMIT, seconds

        proxy.thaw()
        thawed_at = time.monotonic()
        routed = healthy = None
        while time.monotonic() - thawed_at < 3 and (routed is None or healthy is None):
            _, _, body = request(port, *post)
            if routed is None and body["rtjson"]["success"]:
                routed = time.monotonic() - thawed_at
            _, status, _ = request(port, "GET", "/healthz")
            if healthy is None and status == 200:
                healthy = time.monotonic() - thawed_at
        assert routed is not None, "not routed within 3 s of the thaw"
        assert healthy is not None, "not healthy within 3 s of the thaw"
        assert routed < 1.0, routed
        assert healthy < 1.0, healthy
        latencies = sorted(seconds for seconds, _, _ in calls)
        worst_probe = max(seconds for seconds, _, _ in probes)
        print(
            f"\n[{kind}] {server} during a {FREEZE} s freeze: {len(calls)} rtjson requests, "
            f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, max "
            f"{latencies[-1] * 1000:.0f} ms; {len(probes)} /healthz 503, max "
            f"{worst_probe * 1000:.0f} ms; routed {routed:.3f} s and healthy "
            f"{healthy:.3f} s after thaw"
        )
    finally:
        proxy.thaw()
        group.stop_all()


def _healthy(port: int) -> bool:
    try:
        return request(port, "GET", "/healthz")[1] == 200
    except OSError:
        return False
