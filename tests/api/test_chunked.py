"""A chunked routing request (Transfer-Encoding: chunked, no Content-Length).

Django reads CONTENT_LENGTH bytes of a body, so a chunked one used to read as empty:
a 400 "source_ip required" for a well-formed call. gunicorn (the production server)
de-chunks the body and marks its end (wsgi.input_terminated), so the endpoint reads
it; a server that does not mark the end gets a 411 saying why.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from api.parsers import MAX_BODY_BYTES
from tests.api.conftest import RTJSON_URL, call_body, make_token
from tests.servers import child_database_url, free_tcp_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def gunicorn() -> Iterator[int]:
    """The shipped gunicorn config on a free port; always stopped. Yields the port."""
    port = free_tcp_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "SECRET_KEY": "gunicorn-test-key",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": child_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def post_chunked(port: int, key: str, body: bytes, chunk: int = 100) -> tuple[int, dict]:
    """POST `body` in chunks of `chunk` bytes over a raw socket; (status, JSON answer)."""
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + chunk]), body[i : i + chunk])
        for i in range(0, len(body), chunk)
    )
    request = (
        (
            f"POST {RTJSON_URL} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Authorization: Token {key}\r\n"
            "Content-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():  # de-chunk gunicorn's answer
        decoded, rest = b"", payload
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        payload = decoded
    return status, json.loads(payload)


@pytest.mark.django_db(transaction=True)
def test_gunicorn_routes_a_chunked_call(route_a):
    key = make_token("kamailio-chunked")[0]
    body = json.dumps(call_body(call_id="chunked@pbx")).encode()
    too_large = json.dumps(call_body(from_name="x" * MAX_BODY_BYTES)).encode()

    with gunicorn() as port:
        routed = post_chunked(port, key, body)
        refused = post_chunked(port, key, too_large, chunk=4096)

    assert routed[0] == 200, routed
    assert routed[1]["rtjson"]["success"] is True
    assert routed[1]["rtjson"]["routes"]
    assert refused == (400, {"detail": f"Request body too large: at most {MAX_BODY_BYTES} bytes."})


def test_a_chunked_body_without_an_input_end_mark_is_a_411(client, kamailio_key):
    """Django's runserver and test client pass no wsgi.input_terminated."""
    response = client.post(
        RTJSON_URL,
        json.dumps(call_body()),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {kamailio_key}",
        HTTP_TRANSFER_ENCODING="chunked",
    )

    assert response.status_code == 411
    assert "Content-Length" in response.json()["detail"]


def test_an_input_end_mark_lets_the_body_be_read(client, kamailio_key, route_a):
    """What gunicorn gives Django, without the server: no length, an input read to its end."""
    body = json.dumps(call_body()).encode()
    response = client.generic(
        "POST",
        RTJSON_URL,
        b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {kamailio_key}",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )

    assert response.status_code == 200
    assert response.json()["rtjson"]["success"] is True
