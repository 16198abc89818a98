"""The rtjson endpoint's lean path (api.fastpath) against the DRF view it stands in for.

The application is called as a WSGI server calls it, with the production call-path
handler (api.fastpath.CallPathHandler) behind it for what it does not take.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from api.fastpath import CallPathHandler, RtjsonApplication
from routing.compiled import CompiledRouteTable
from tests.api.conftest import RTJSON_URL, call_body, make_token
from tests.servers import database_unreachable

pytestmark = pytest.mark.django_db(transaction=True)


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app: RtjsonApplication,
    body: bytes | dict | None = None,
    *,
    key: str | None = None,
    method: str = "POST",
    path: str = RTJSON_URL,
    remote: str = "127.0.0.1",
    **environ: Any,
) -> Answer:
    data = body if isinstance(body, bytes) else json.dumps(body or call_body()).encode()
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8001",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(data),
        "CONTENT_LENGTH": str(len(data)),
        "CONTENT_TYPE": "application/json",
        "REMOTE_ADDR": remote,
        **environ,
    }
    if key:
        env["HTTP_AUTHORIZATION"] = f"Token {key}"
    got: dict[str, Any] = {}

    def start_response(status, headers, exc_info=None):
        got.update(status=status, headers=headers)

    chunks = app(env, start_response)
    body_out = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return Answer(got["status"], got["headers"], body_out)


@pytest.fixture
def compiled(route_a, route_b):
    """Tenant A's and B's routes, compiled: decisions need no database."""
    table = CompiledRouteTable(background=False, poll_interval=3600)
    assert table.wait_ready(10)  # loaded, and not due for a refresh in the test
    return table


@pytest.fixture
def app(compiled, settings) -> RtjsonApplication:
    settings.KAMAILIO_TOKEN_CACHE_SECONDS = 3600  # the token read once, then from memory
    settings.ROUTING_SCREEN_SOURCE = ""  # no blocklists in these tests
    settings.ROUTING_RATE_SOURCE = ""
    return RtjsonApplication(CallPathHandler(), table=compiled)


@pytest.fixture
def key(db) -> str:
    return make_token("kamailio-fast", "127.0.0.0/8")[0]


def without_id(answer: Answer) -> dict[str, Any]:
    document = answer.json()["rtjson"]
    document.pop("decision_id")
    return document


def test_it_answers_as_the_drf_view_does_for_every_kind_of_call(app, key, client):
    bodies = [
        call_body(),  # routed, tenant A
        call_body(source_ip="198.51.100.20"),  # routed, tenant B
        call_body(ruri="sip:+4930123@x.net", to_uri="sip:+4930123@x.net"),  # no route: 404
        call_body(source_ip="203.0.113.9"),  # unknown source: 403
    ]
    for body in bodies:
        fast = call(app, body, key=key)
        slow = client.post(
            RTJSON_URL,
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {key}",
            REMOTE_ADDR="127.0.0.1",
        )
        assert fast.status_code == slow.status_code == 200
        assert fast.headers["Content-Type"] == "application/json"
        document = slow.json()["rtjson"]
        document.pop("decision_id")
        assert without_id(fast) == document


def test_a_decision_from_memory_makes_no_query(app, key):
    call(app, key=key)  # the token is read once
    with CaptureQueriesContext(connection) as queries:
        answer = call(app, key=key)
    assert answer.json()["rtjson"]["success"] is True
    assert len(queries) == 0


def test_tenant_b_never_gets_tenant_a_routes(app, key):
    document = call(app, call_body(source_ip="198.51.100.20"), key=key).json()["rtjson"]
    assert document["tenant"] == "tenant-b"
    assert {route["trunk"] for route in document["routes"]} == {"b-primary", "b-backup"}


@pytest.mark.parametrize(
    ("case", "status", "expected"),
    [
        ("no token", 401, "Authentication credentials were not provided."),
        ("wrong token", 401, "Invalid or inactive token."),
        ("wrong network", 403, "may not be used from this address"),
        ("not json", 400, "JSON parse error"),
        ("bad field", 400, "source_port"),
        ("a list", 400, "Invalid data"),
    ],
)
def test_what_it_does_not_take_gets_djangos_own_answer(app, key, case, status, expected):
    body: Any = call_body()
    kwargs: dict[str, Any] = {"key": key}
    if case == "no token":
        kwargs["key"] = None
    elif case == "wrong token":
        kwargs["key"] = "not-a-key"
    elif case == "wrong network":
        kwargs["remote"] = "192.0.2.200"
    elif case == "not json":
        body = b'{"event": '
    elif case == "bad field":
        body = call_body(source_port="http")
    elif case == "a list":
        body = b"[1, 2]"
    answer = call(app, body, **kwargs)
    assert answer.status_code == status, answer.body
    assert expected in answer.body.decode()


def test_other_paths_and_methods_go_to_django(app, key):
    assert call(app, method="GET", key=key).status_code == 405
    assert call(app, method="GET", path="/healthz").json() == {"status": "ok"}
    assert call(app, path="/admin/", key=key).status_code == 404  # not served here at all


def test_a_chunked_body_goes_to_django_and_is_still_answered(app, key):
    data = json.dumps(call_body()).encode()
    answer = call(
        app,
        data,
        key=key,
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input_terminated": True},
    )
    assert answer.status_code == 200
    assert answer.json()["rtjson"]["success"] is True


def test_a_decision_that_needs_the_database_is_made_where_it_may_wait(route_a, key, settings):
    # The database table: every decision reads rows, so none can be made inline.
    settings.KAMAILIO_TOKEN_CACHE_SECONDS = 0
    app = RtjsonApplication(CallPathHandler())
    answer = call(app, key=key)
    assert answer.json()["rtjson"]["success"] is True
    assert answer.json()["rtjson"]["tenant"] == "tenant-a"


def test_a_token_due_for_a_reread_is_served_from_memory_and_read_beside_the_call(
    app, key, settings
):
    from api.authentication import TOKENS
    from api.models import KamailioToken

    settings.KAMAILIO_TOKEN_CACHE_SECONDS = 0.05
    call(app, key=key)
    KamailioToken.objects.update(is_active=False)  # revoked in the admin
    import time

    time.sleep(0.1)  # the cached state is due for a re-read
    with CaptureQueriesContext(connection) as queries:
        first = call(app, key=key)
    assert first.status_code == 200  # this call: the last state read
    assert len(queries) == 0  # the re-read happens in another thread
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = call(app, key=key)
        if answer.status_code == 401:
            break
        time.sleep(0.05)
    assert answer.status_code == 401, "the revocation never took effect"
    TOKENS.clear()


def test_an_unknown_token_while_the_database_refuses_gets_a_503_answer_not_a_500(
    route_a, settings, tmp_path
):
    from api.authentication import TOKENS

    settings.KAMAILIO_TOKEN_CACHE_SECONDS = 0
    TOKENS.clear()
    with database_unreachable(tmp_path):
        answer = call(RtjsonApplication(CallPathHandler()), key="never-seen")
    assert answer.status_code == 200
    document = answer.json()["rtjson"]
    assert (document["code"], document["reason"]) == (503, "Routing Database Unavailable")
