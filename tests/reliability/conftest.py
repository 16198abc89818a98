"""A hung database: PostgreSQL behind a proxy that freezes (tests/reliability/freezing_proxy.py).

The proxy only makes sense in front of a server, so these tests run on PostgreSQL
only; the deadline logic itself is also tested without a database
(test_bridge_deadline.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection, connections

from tests.evapi_bridge.fake_kamailio import FakeKamailio
from tests.reliability.freezing_proxy import FreezingProxy, running_proxy

# Every answer must leave within the deadline plus this (the promise under test).
SLACK = 0.1
DEADLINE = 0.3  # the default ROUTING_DECISION_DEADLINE_MS, in seconds


def require_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a freezing TCP proxy needs a database server: PostgreSQL only")


@pytest.fixture
def proxy(transactional_db) -> Iterator[FreezingProxy]:
    """A freezing proxy in front of the test database, always thawed and stopped."""
    require_postgresql()
    db = connection.settings_dict
    with running_proxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)) as running:
        try:
            yield running
        finally:
            running.thaw()


@pytest.fixture
def through_proxy(proxy: FreezingProxy) -> Iterator[FreezingProxy]:
    """Every new connection of this process (any thread) goes through the proxy.

    Threads' connections are made from one shared settings dict, so changing it
    reroutes the bridge's workers and the compiled table's threads too.
    """
    db = connections.settings["default"]
    assert db is connection.settings_dict
    saved = (db.get("HOST"), db.get("PORT"))
    connection.close()
    db["HOST"], db["PORT"] = "127.0.0.1", str(proxy.port)
    try:
        yield proxy
    finally:
        proxy.thaw()
        db["HOST"], db["PORT"] = saved
        connection.close()


@pytest.fixture
def kamailio() -> Iterator[FakeKamailio]:
    server = FakeKamailio()
    try:
        yield server
    finally:
        server.stop()


class AnswerLog:
    """Reads every answer on a fake Kamailio connection in a thread, with its arrival time."""

    def __init__(self, client) -> None:
        import threading
        import time

        self.client = client
        self.sent: dict[int, float] = {}
        self.answers: list[tuple[float, dict]] = []
        self._time = time.monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="answer-log", daemon=True)
        self._thread.start()

    def send(self, *events: dict) -> None:
        now = self._time()
        for body in events:
            self.sent[body["tindex"]] = now
        self.client.send_events(*events)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                found = self.client.answers(1, timeout=0.1)
            except (TimeoutError, OSError):
                continue
            self.answers.append((self._time(), found[0]))

    def of(self, tindex: int) -> list[tuple[float, dict]]:
        """(seconds from send to answer, answer) for each answer to `tindex`."""
        return [
            (at - self.sent[tindex], answer)
            for at, answer in list(self.answers)
            if answer["xtra"]["tindex"] == tindex
        ]

    def wait_for(self, tindexes, timeout: float) -> None:
        deadline = self._time() + timeout
        while self._time() < deadline:
            if all(self.of(tindex) for tindex in tindexes):
                return
            self._stop.wait(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
