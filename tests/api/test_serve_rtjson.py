"""manage.py serve_rtjson: granian serving the call path, connections kept alive."""

from __future__ import annotations

import http.client
import json
import os
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.api.conftest import RTJSON_URL, call_body, make_token
from tests.e2e.processes import ProcessGroup
from tests.servers import child_database_url, free_tcp_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(sys.platform != "linux", reason="starts a server")
def test_it_answers_kamailio_on_one_kept_alive_connection(route_a, route_b, tmp_path):
    key = make_token("served", "127.0.0.0/8")[0]
    port = free_tcp_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DEBUG")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": child_database_url(),
        "SECRET_KEY": "serve-test-key",
        "SECURE_SSL_REDIRECT": "false",
        "ROUTING_TABLE": "compiled",
        "LOG_LEVEL": "WARNING",
    }
    group = ProcessGroup(tmp_path)
    try:
        server = group.start(
            "serve_rtjson",
            [sys.executable, "manage.py", "serve_rtjson", "--bind", f"127.0.0.1:{port}",
             "--workers", "1"],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def healthy() -> bool:
            try:
                connection.request("GET", "/healthz")
                return connection.getresponse().read() == b'{"status": "ok"}'
            except OSError:
                connection.close()
                return False

        server.wait_until(healthy, what="serve_rtjson /healthz answering", timeout=30)
        sockets = set()
        headers = {"Content-Type": "application/json", "Authorization": f"Token {key}"}
        for body in (call_body(), call_body(source_ip="198.51.100.20"), call_body()):
            connection.request("POST", RTJSON_URL, json.dumps(body), headers)
            response = connection.getresponse()
            document = json.loads(response.read())["rtjson"]
            assert response.status == 200
            assert not response.will_close, "the server closed the connection"
            assert document["success"] is True
            sockets.add(id(connection.sock))
        assert document["tenant"] == "tenant-a"
        assert len(sockets) == 1  # one TCP connection for every request
        connection.request("POST", RTJSON_URL, b"[]", headers)  # Django's answer, still alive
        response = connection.getresponse()
        assert response.status == 400
        response.read()
        connection.close()
    finally:
        group.stop_all()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bind", "localhost"], "expected HOST:PORT"),
        (["--bind", "127.0.0.1:99999"], "is not a number from 1 to 65535"),
        (["--bind", "::1:8001"], "write an IPv6 address as [ADDRESS]:PORT"),
        (["--workers", "0"], "at least 1"),
    ],
)
def test_bad_arguments_say_what_is_wrong(argv, message):
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call_command("serve_rtjson", *argv)
