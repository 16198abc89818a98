"""The rtjson endpoint's lean path: Kamailio's routing requests without Django's stack.

Every new call is a POST to /api/v1/kamailio/rtjson. Through Django that request
crossed the middleware, URL resolution, DRF's request wrapping, content negotiation
and the response's rendering: seven times the cost of the decision itself. This
WSGI callable answers the requests Kamailio actually sends, a well-formed body with
a valid token, by calling the very pieces the DRF view calls, in the same order:

    KamailioTokenAuthentication -> CallRequestSerializer.fast_validated_data
    -> kamailio.requests -> routing.service.decide -> kamailio.rtjson

and hands everything else to Django (CallPathHandler): a missing or
wrong token, a body that is not JSON or not a plainly valid call, a chunked body,
another method or path (/healthz, /metrics). Django then gives its usual answer
(400 with field errors, 401, 403, 405), so no rule is written twice and the two
paths cannot drift apart on what they accept: they differ only in speed.

Where it decides: inline, in the server's request thread, when the decision needs
only this process's memory (routing.inline.memory_only: the compiled table and the
token cache loaded). When it needs the database (a plan still loading, the token
re-read once a second), the request is decided again where it may wait, for at most
what is left of the decision deadline (settings.ROUTING_DECISION_DEADLINE_MS from
the request's start, routing.deadline.call_within): past it, a hung database gets
the call a 503 "Routing Database Unavailable" in time, whatever the server's
threading.

What Django's middleware adds to answers (security headers, CSP) means nothing to
Kamailio; the admin and the REST API keep all of it (they are served by config.wsgi).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.db import DatabaseError, close_old_connections, connection
from rest_framework import exceptions

from api.authentication import KamailioTokenAuthentication
from api.parsers import BoundedJSONParser
from api.serializers import CallRequestSerializer
from kamailio.requests import CallFieldsError, call_request_from_fields
from kamailio.rtjson import Failure, encode, failure_decision, failure_of, to_rtjson
from routing import deadline, service
from routing.inline import NeedsDatabase, memory_only
from routing.metrics import observe_decision
from routing.resolver import Decision, RouteTable

logger = logging.getLogger("routing.api")

RTJSON_PATHS = frozenset({"/api/v1/kamailio/rtjson", "/api/v1/kamailio/rtjson/"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Request:
    """What KamailioTokenAuthentication reads of a request (META and headers), from WSGI."""

    __slots__ = ("META", "headers")

    def __init__(self, environ: dict[str, Any]) -> None:
        self.META = environ
        self.headers = _Headers(environ)


class _Headers:
    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def get(self, name: str, default: Any = None) -> Any:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"), default)


class CallPathHandler(WSGIHandler):
    """Django, resolving every request against the call path's URLs (config.urls_rtjson):
    the rtjson endpoint, /healthz and /metrics, nothing else."""

    urlconf = "config.urls_rtjson"

    def get_response(self, request):
        # Django resolves a request against request.urlconf when it is set.
        request.urlconf = self.urlconf
        return super().get_response(request)


class RtjsonApplication:
    """WSGI: the rtjson endpoint's common case here, every other request to `fallback`."""

    def __init__(self, fallback: WSGIApp, *, table: RouteTable | None = None) -> None:
        self.fallback = fallback
        self.table = table  # None: the configured one (routing.service.get_route_table)
        self.authentication = KamailioTokenAuthentication()

    def __call__(self, environ: dict[str, Any], start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        if environ.get("PATH_INFO") in RTJSON_PATHS and environ.get("REQUEST_METHOD") == "POST":
            body = _plain_body(environ)
            if body is not None:
                try:
                    with memory_only():
                        answer = self.answer(environ, body, started)
                except NeedsDatabase:
                    answer = self.answer_waiting(environ, body, started)
                if answer is not None:
                    start_response(
                        "200 OK",
                        [("Content-Type", "application/json"),
                         ("Content-Length", str(len(answer)))],
                    )  # fmt: skip
                    return [answer]
                environ["wsgi.input"] = io.BytesIO(body)  # Django reads it again
        return self.fallback(environ, start_response)

    def answer(self, environ: dict[str, Any], body: bytes, started: float) -> bytes | None:
        """The answer's body, or None for Django to answer (a bad token or a bad call)."""
        try:
            if self.authentication.authenticate(_Request(environ)) is None:
                return None  # no token at all: Django says 401
        except exceptions.APIException:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        fields = CallRequestSerializer.fast_validated_data(data)
        if fields is None:
            return None
        try:
            call = call_request_from_fields(fields)
        except CallFieldsError:
            return None
        try:
            decision = service.decide(call, table=self.table, transport="http")
        except NeedsDatabase:
            raise
        except Exception as exc:
            decision = _failed(exc)
        observe_decision("http", str(decision.outcome), time.perf_counter() - started)
        return b'{"rtjson":%s}' % encode(to_rtjson(decision))

    def answer_waiting(self, environ: dict[str, Any], body: bytes, started: float) -> bytes | None:
        """answer() where it may wait for the database, until the decision deadline."""
        left = deadline.decision_deadline() - (time.perf_counter() - started)
        try:
            return deadline.call_within(left, self._answer_waiting, environ, body, started)
        except DatabaseError as exc:  # the deadline passed, or the token could not be read
            seconds = time.perf_counter() - started
            if isinstance(exc, deadline.DeadlineExceeded):
                detail = f"no decision within {seconds * 1000:.0f} ms: the database does not answer"
            else:
                detail = f"database error: {exc}"
            logger.error("routing engine: %s; answering 503 to Kamailio", detail)
            decision = failure_decision(Failure.DATABASE_UNAVAILABLE, detail)
            observe_decision("http", str(decision.outcome), seconds)
            return b'{"rtjson":%s}' % encode(to_rtjson(decision))

    def _answer_waiting(self, environ: dict[str, Any], body: bytes, started: float) -> bytes | None:
        try:
            close_old_connections()  # past CONN_MAX_AGE, or broken by a failure
        except DatabaseError:
            _close_connection()
        try:
            return self.answer(environ, body, started)
        except DatabaseError:
            _close_connection()  # the next request reconnects
            raise


def _failed(exc: Exception) -> Decision:
    """The answer when deciding raised: the DRF view's handle_exception, in short."""
    failure = failure_of(exc)
    if isinstance(exc, DatabaseError):
        _close_connection()  # reconnect on the next request, not health-check a hung socket
    logger.exception("routing engine error; answering %d to Kamailio", failure.code)
    return failure_decision(failure, repr(exc))


def _close_connection() -> None:
    with contextlib.suppress(DatabaseError):
        connection.close()


def _plain_body(environ: dict[str, Any]) -> bytes | None:
    """The body of a request with a Content-Length within the parser's limit, else None."""
    length = environ.get("CONTENT_LENGTH")
    if not length or not length.isdigit():
        return None  # chunked or absent: Django's view knows what to say
    size = int(length)
    if size > BoundedJSONParser.max_bytes:
        return None
    body = environ["wsgi.input"].read(size)
    if len(body) < size:  # the client sent less: Django's parser says so
        environ["wsgi.input"] = io.BytesIO(body)
        return None
    return body
