"""The bridge against fake Kamailios: real TCP sockets on 127.0.0.1, the real database.

The bridge runs in a thread with its own event loop and worker threads, so the
route table must be committed: these tests use transactional databases.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from prometheus_client import REGISTRY

from api.models import KamailioToken
from evapi_bridge.bridge import Bridge, BridgeConfig
from routing.resolver import RouteTable
from routing.service import get_route_table
from routing.tables import DatabaseRouteTable
from tests.evapi_bridge.fake_kamailio import FakeKamailio, frame
from tests.factories import make_route

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE_A, SOURCE_B = "192.0.2.7", "198.51.100.7"


@contextmanager
def running_bridge(
    *kamailios: FakeKamailio,
    table_factory: Callable[[], RouteTable] = get_route_table,
    bridge_class: type[Bridge] = Bridge,
    **options: Any,
) -> Iterator[Bridge]:
    """A bridge connected to `kamailios`, always stopped (and checked stopped) at the end."""
    options = {"backoff_initial": 0.05, "backoff_max": 0.2, "stats_interval": 0, **options}
    addresses = tuple(("127.0.0.1", kamailio.port) for kamailio in kamailios)
    config = BridgeConfig(addresses=addresses, **options)
    bridge = bridge_class(config, table_factory=table_factory)
    thread = threading.Thread(target=asyncio.run, args=(bridge.run(),), name="bridge-loop")
    thread.start()
    try:
        yield bridge
    finally:
        bridge.stop()
        thread.join(30)
        assert not thread.is_alive(), "the bridge did not stop"


def event(tindex: int, source_ip: str | None = SOURCE_A, **fields: Any) -> dict[str, Any]:
    body = {
        "event": "sip-routing",
        "tindex": tindex,
        "tlabel": tindex * 7 + 1,
        "source_ip": source_ip,
        "call_id": f"call-{tindex}@pbx.example.net",
        "from_name": "Alice",
        "from_uri": "sip:+33123456789@pbx.example.net",
        "to_uri": "sip:+33612345678@sbc.example.net",
        "ruri": "sip:+33612345678@sbc.example.net",
    }
    body.update(fields)
    return {name: value for name, value in body.items() if value is not None}


def by_tindex(answers: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    keyed = {answer["xtra"]["tindex"]: answer for answer in answers}
    assert len(keyed) == len(answers), "an event was answered twice"
    return keyed


def without_id(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in ("decision_id", "xtra")}


def test_it_answers_1000_interleaved_events_in_bursts_exactly_once_on_their_connection(
    route_a, route_b
):
    """Two Kamailios, tenants A and B mixed, bursts cut at random byte boundaries."""
    rng = random.Random(4)
    first, second = FakeKamailio(), FakeKamailio()
    try:
        # A 1,000-event burst is a backlog by design: no overload shedding here, and
        # no deadline (on a loaded machine the last events wait over 300 ms).
        with running_bridge(first, second, max_wait=120, deadline=120):
            clients = [first.accept(), second.accept()]
            sent: list[dict[int, dict[str, Any]]] = [{}, {}]
            for tindex in range(1000):
                source = rng.choice([SOURCE_A, SOURCE_B])
                sent[tindex % 2][tindex] = event(tindex, source, callee=f"+3361234{tindex:04d}")
            for client, events in zip(clients, sent, strict=True):
                stream = b"".join(frame(body) for body in events.values())
                position = 0
                while position < len(stream):  # bursts of 1 byte to 8 KB
                    size = rng.choice([1, 7, 100, 1500, 8192])
                    client.send(stream[position : position + size])
                    position += size
            for client, events in zip(clients, sent, strict=True):
                answers = by_tindex(client.answers(len(events)))
                assert answers.keys() == events.keys()
                for tindex, answer in answers.items():
                    body = events[tindex]
                    assert answer["xtra"] == {"tindex": tindex, "tlabel": body["tlabel"]}
                    tenant = "tenant-a" if body["source_ip"] == SOURCE_A else "tenant-b"
                    assert (answer["success"], answer["tenant"]) == (True, tenant)
                    assert answer["routes"][0]["uri"].startswith(f"sip:{body['callee']}@")
                    trunks = {route["trunk"][0] for route in answer["routes"]}
                    assert trunks == {tenant[-1]}, "a tenant got another tenant's trunks"
                assert client.nothing_within(0.2), "an extra answer arrived"
    finally:
        first.stop()
        second.stop()


def test_its_answers_equal_the_http_endpoints_for_the_same_call(
    kamailio, client, tenant_a, trunks_a
):
    make_route(tenant_a, "33", *trunks_a)
    make_route(tenant_a, "336", (trunks_a[0], 1, 70), (trunks_a[1], 1, 30), routing_mode="parallel")
    make_route(tenant_a, "1", action="location")
    make_route(tenant_a, "900", action="reject", reject_code=403, reject_reason="Barred")
    token = KamailioToken(name="kamailio-1")
    key = token.set_new_key()
    token.save()
    callees = ["+33612345678", "+33123456789", "1000", "900123", "+49301234567"]
    events = [
        event(n, callee=callee, call_id=f"c{n}@pbx")
        for n, callee in enumerate(callees * 4)
        if n < 20
    ]
    events.append(event(20, source_ip="203.0.113.1"))
    with running_bridge(kamailio):
        evapi = kamailio.accept()
        evapi.send_events(*events)
        answers = by_tindex(evapi.answers(len(events)))
    for body in events:
        fields = {name: value for name, value in body.items() if name not in ("tindex", "tlabel")}
        response = client.post(
            "/api/v1/kamailio/rtjson",
            data=json.dumps(fields),
            content_type="application/json",
            headers={"Authorization": f"Token {key}"},
        )
        assert response.status_code == 200, response.content
        # Same keys in the same order (byte equality: tests/evapi_bridge/test_answer_event.py).
        evapi_items = list(without_id(answers[body["tindex"]]).items())
        assert evapi_items == list(without_id(response.json()["rtjson"]).items())
    outcomes = {answer["outcome"] for answer in answers.values()}
    assert outcomes == {"routed", "location", "rejected", "no_route", "forbidden"}


def test_it_uses_its_default_tenant_only_for_events_without_a_source(kamailio, route_a, route_b):
    with running_bridge(kamailio, default_tenant="tenant-b"):
        evapi = kamailio.accept()
        minimal = {"event": "sip-routing", "tindex": 1, "tlabel": 2, "callee": "+33612345678"}
        evapi.send_events(minimal, event(3, SOURCE_A))
        answers = by_tindex(evapi.answers(2))
    assert answers[1]["tenant"] == "tenant-b"
    assert answers[3]["tenant"] == "tenant-a"


def test_it_counts_decisions_connections_and_events_in_flight_in_prometheus(kamailio, route_a):
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    routed = sample("routing_decisions_total", transport="evapi", outcome="routed")
    forbidden = sample("routing_decisions_total", transport="evapi", outcome="forbidden")
    timed = sample("routing_decision_seconds_count", transport="evapi")
    in_flight = sample("evapi_bridge_events_in_flight")
    with running_bridge(kamailio):
        evapi = kamailio.accept()
        evapi.send_events(event(1), event(2), event(3, source_ip="203.0.113.1"))
        evapi.answers(3)
        assert sample("evapi_bridge_connected", address=kamailio.address) == 1
    assert sample("evapi_bridge_connected", address=kamailio.address) == 0
    assert sample("evapi_bridge_events_in_flight") == in_flight  # every event answered
    assert sample("routing_decisions_total", transport="evapi", outcome="routed") == routed + 2
    assert sample("routing_decisions_total", transport="evapi", outcome="forbidden") == (
        forbidden + 1
    )
    assert sample("routing_decision_seconds_count", transport="evapi") == timed + 3


def test_it_logs_each_decision_at_debug_and_a_periodic_summary_at_info(kamailio, route_a, caplog):
    caplog.set_level(logging.DEBUG, logger="evapi_bridge")
    with running_bridge(kamailio, stats_interval=0.3):
        evapi = kamailio.accept()
        evapi.send_events(event(7, caller="3312"), {"event": "dialog-end"})
        evapi.answers(1)
        time.sleep(0.5)
    messages = [record.getMessage() for record in caplog.records]
    decision = next(m for m in messages if "tindex=7" in m)
    assert decision.startswith(f"{kamailio.address}: tindex=7 tlabel=50 caller='3312' ")
    assert "callee='+33612345678' routed 200 OK (" in decision
    assert decision.endswith(" ms)")
    summary = next(m for m in messages if m.startswith("last "))
    assert "2 events, 1 answers (0 engine errors, 0 malformed), 1 ignored" in summary
    assert "latency p50 " in summary
    assert summary.endswith("1/1 connected, 0 in flight")


def test_it_reconnects_when_kamailio_drops_the_connection_or_restarts(kamailio, route_a, caplog):
    caplog.set_level(logging.INFO, logger="evapi_bridge")
    with running_bridge(kamailio):
        kamailio.accept().close()  # Kamailio drops the engine
        evapi = kamailio.accept()
        evapi.send_events(event(1))
        assert evapi.answers(1)[0]["xtra"]["tindex"] == 1

        kamailio.stop()  # Kamailio is down for several retry periods
        time.sleep(1.0)
        back = FakeKamailio(kamailio.port)
        try:
            evapi = back.accept()
            evapi.send_events(event(2))
            assert evapi.answers(1)[0]["xtra"]["tindex"] == 2
        finally:
            back.stop()
    messages = [record.getMessage() for record in caplog.records]
    address = kamailio.address
    assert messages.count(f"connected to {address}") == 3
    assert sum(m.startswith(f"disconnected from {address}") for m in messages) == 3
    # Refused for a second at 0.05..0.2 s backoff: many attempts, one line.
    assert sum(m.startswith(f"cannot connect to {address}") for m in messages) == 1


def test_a_kamailio_that_closes_at_once_gets_backoff_not_a_reconnection_storm(kamailio):
    """evapi's max_clients or a source filter closes the engine right after accept."""
    accepted = 0
    with running_bridge(kamailio):  # backoff from 0.05 s, doubling up to 0.2 s
        deadline = time.monotonic() + 1.0
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                kamailio.accept(timeout=remaining).close()
            except TimeoutError:
                break
            accepted += 1
    assert 3 <= accepted <= 8  # 0.05 + 0.1 + 0.2 + 0.2 + ... ; no backoff would be ~20


def test_it_keeps_retrying_until_kamailio_first_comes_up(route_a):
    server = FakeKamailio()
    port = server.port
    server.stop()
    with running_bridge(server):
        time.sleep(0.5)
        late = FakeKamailio(port)
        try:
            evapi = late.accept()
            evapi.send_events(event(5))
            assert evapi.answers(1)[0]["success"] is True
        finally:
            late.stop()


def test_a_malformed_event_gets_a_failure_answer_and_the_connection_stays_usable(
    kamailio, route_a, caplog
):
    caplog.set_level(logging.DEBUG, logger="evapi_bridge")
    with running_bridge(kamailio):
        evapi = kamailio.accept()
        evapi.send_events(
            event(1, ruri=None, to_uri=None),  # no callee at all
            b'{"event":"sip-routing","tindex":2,"tlabel":3,"caller":"a"b"}',  # broken JSON
            {"event": "sip-routing", "callee": "+33612345678"},  # no transaction: unanswerable
            {"event": "connection-new"},  # not a routing event: ignored
            event(4),
            b'{"event":"sip-routing","tindex":5,"tlabel":6,"x":' + b"[" * 1500 + b"]" * 1500 + b"}",
            event(2**32),  # not a Kamailio transaction id: unanswerable
        )
        answers = by_tindex(evapi.answers(4))
        assert evapi.nothing_within(0.3)
    assert (answers[1]["success"], answers[1]["code"]) == (False, 400)
    assert answers[1]["reason"].startswith("Bad Request: callee: no callee")
    assert (answers[2]["code"], answers[2]["xtra"]) == (400, {"tindex": 2, "tlabel": 3})
    assert answers[4]["success"] is True
    assert (answers[5]["code"], answers[5]["xtra"]) == (400, {"tindex": 5, "tlabel": 6})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("event not answered: routing event without a usable tindex" in w for w in warnings)
    # The second unanswerable event within a second is logged at debug (rate limit).
    messages = [r.getMessage() for r in caplog.records]
    assert any("not answered: routing event with tindex 4294967296 beyond" in m for m in messages)


def test_a_framing_error_resets_the_connection_after_answering_what_came_before(
    kamailio, route_a, caplog
):
    with running_bridge(kamailio):
        evapi = kamailio.accept()
        evapi.send(frame(event(1)) + frame(event(2)) + b"GET / HTTP/1.0\r\n\r\n")
        rest = evapi.read_until_closed()  # the two answers, then the reset
        assert rest.count(b'"xtra"') == 2
        again = kamailio.accept()  # and it reconnects by itself
        again.send(b"99999999:")  # over EVAPI_MAX_FRAME
        assert again.read_until_closed() == b""
        third = kamailio.accept()
        third.send_events(event(3))
        assert third.answers(1)[0]["xtra"]["tindex"] == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("expected a length digit or ':', got b'G'" in e for e in errors)
    assert any("over the maximum" in e for e in errors)


class SlowTable(DatabaseRouteTable):
    """The real route table, one second slow for numbers starting with 999 (a slow query)."""

    def routes(self, tenant_id: int, candidates: list[str], version):
        if candidates[0].startswith("999"):
            time.sleep(1.0)
        return super().routes(tenant_id, candidates, version)


def test_a_slow_decision_does_not_hold_back_the_next_events(kamailio, route_a):
    # The deadline is beyond the slow decision: it is answered, not given up on.
    with running_bridge(kamailio, workers=2, table_factory=SlowTable, deadline=5):
        evapi = kamailio.accept()
        evapi.send_events(event(0, callee="+999123"), *(event(n) for n in range(1, 6)))
        started = time.monotonic()
        first = evapi.answers(5)
        assert sorted(answer["xtra"]["tindex"] for answer in first) == [1, 2, 3, 4, 5]
        assert time.monotonic() - started < 0.9
        assert evapi.answers(1)[0]["xtra"]["tindex"] == 0


def test_events_that_waited_too_long_for_a_worker_get_a_fast_503(kamailio, route_a, caplog):
    """Overload: shed what Kamailio is about to time out, instead of deciding it late."""
    with running_bridge(kamailio, workers=1, max_wait=0.3, table_factory=SlowTable, deadline=5):
        evapi = kamailio.accept()
        evapi.send_events(event(0, callee="+999123"), event(1), event(2))
        answers = by_tindex(evapi.answers(3))
        evapi.send_events(event(3))
        answers.update(by_tindex(evapi.answers(1)))
    assert answers[0]["outcome"] == "no_route"  # decided, slowly (tenant A has no 999)
    for shed in (answers[1], answers[2]):
        assert (shed["success"], shed["code"]) == (False, 503)
        assert shed["reason"] == "Routing Engine Overloaded"
    assert answers[3]["success"] is True  # the backlog is gone: deciding again
    messages = [record.getMessage() for record in caplog.records]
    assert sum(m.startswith("overloaded: events waited over 0.3 s") for m in messages) == 1
    assert "no longer overloaded" in messages


def postgres_admin() -> psycopg.Connection:
    """A connection to the server's maintenance database, outside Django."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname="postgres",
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"],
        port=db["PORT"] or 5432,
        autocommit=True,
    )


def open_database_connections() -> int:
    """Connections to the test database held by this process (SQLite) or anyone (PostgreSQL)."""
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        fds = Path("/proc/self/fd").iterdir()
        return sum(1 for fd in fds if os.path.realpath(fd) == os.path.realpath(name))
    with postgres_admin() as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])
        return row.fetchone()[0]


def test_it_holds_one_database_connection_per_worker_and_none_per_event(kamailio, route_a):
    connection.close()  # the test's own, so that only the bridge's are counted
    with running_bridge(kamailio, workers=3):
        evapi = kamailio.accept()
        for burst in range(5):
            evapi.send_events(*(event(burst * 100 + n) for n in range(100)))
            assert len(evapi.answers(100)) == 100
        # One per worker, and one for the decision log's writer while it has samples.
        assert 1 <= open_database_connections() <= 4
    # The workers closed theirs on the way out, and the idle decision log its own (a
    # loaded machine may take a moment to let the server see the last one go).
    deadline = time.monotonic() + 5
    while open_database_connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_database_connections() == 0


class database_outage:
    """Make the test database really unavailable to the bridge's connections, then back.

    PostgreSQL: refuse new connections and kill the existing ones. SQLite: take an
    exclusive lock from another connection (readers then fail with "database is
    locked" after the busy timeout, shortened here).
    """

    def __enter__(self) -> database_outage:
        self.settings = connection.settings_dict
        self.vendor = connection.vendor
        self.saved_timeout = self.settings.get("OPTIONS", {}).get("timeout")
        if self.vendor == "sqlite":
            self.settings.setdefault("OPTIONS", {})["timeout"] = 0.2
            self.locker = sqlite3.connect(self.settings["NAME"], isolation_level=None)
            mode = self.locker.execute("PRAGMA journal_mode").fetchone()[0]
            assert mode != "wal", "an exclusive lock does not stop WAL readers"
        return self

    def lock(self) -> None:
        if self.vendor == "sqlite":
            self.locker.execute("BEGIN EXCLUSIVE")
            return
        with postgres_admin() as admin:
            admin.execute(f'ALTER DATABASE "{self.settings["NAME"]}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.settings["NAME"]],
            )

    def unlock(self) -> None:
        if self.vendor == "sqlite":
            if self.locker.in_transaction:
                self.locker.execute("ROLLBACK")
            return
        with postgres_admin() as admin:
            admin.execute(f'ALTER DATABASE "{self.settings["NAME"]}" ALLOW_CONNECTIONS true')

    def __exit__(self, *exc_info: object) -> None:
        self.unlock()
        if self.vendor == "sqlite":
            self.locker.close()
            if self.saved_timeout is None:
                self.settings["OPTIONS"].pop("timeout", None)
            else:
                self.settings["OPTIONS"]["timeout"] = self.saved_timeout
        connection.close()  # the test's own connection may have been killed


def test_a_database_outage_gets_5xx_answers_and_the_bridge_recovers_by_itself(
    kamailio, route_a, caplog
):
    caplog.set_level(logging.INFO, logger="evapi_bridge")
    with database_outage() as outage, running_bridge(kamailio, workers=2):
        evapi = kamailio.accept()
        evapi.send_events(event(1))
        assert evapi.answers(1)[0]["success"] is True

        outage.lock()
        evapi.send_events(*(event(n) for n in range(10, 16)))
        during = by_tindex(evapi.answers(6))
        for answer in during.values():
            assert (answer["success"], answer["outcome"]) == (False, "error")
            assert answer["code"] == 503
            assert answer["reason"] == "Routing Database Unavailable"
            assert answer["routes"] == []

        outage.unlock()
        evapi.send_events(*(event(n) for n in range(20, 26)))
        after = by_tindex(evapi.answers(6))
        assert all(answer["success"] for answer in after.values())
    messages = [record.getMessage() for record in caplog.records]
    assert sum(m.startswith("routing engine failing") for m in messages) == 1
    assert "routing engine recovered" in messages
