"""Decisions made in the bridge's event loop when they need only memory (routing.inline).

A decision from the compiled table is made where the event was read, with no thread
hand-off; one that needs the database goes to a worker thread, with the same answer.
"""

from __future__ import annotations

import time

import pytest

from evapi_bridge.bridge import Bridge
from routing.compiled import CompiledRouteTable
from routing.tables import DatabaseRouteTable
from tests.evapi_bridge.fake_kamailio import FakeKamailio
from tests.evapi_bridge.test_bridge import by_tindex, event, running_bridge, without_id

pytestmark = pytest.mark.django_db(transaction=True)


class CountingBridge(Bridge):
    """The bridge, counting the events it hands to its worker threads."""

    handed = 0

    def submit(self, connection, payload: bytes) -> None:
        self.handed += 1
        super().submit(connection, payload)


def running(kamailio: FakeKamailio, table_factory):
    return running_bridge(kamailio, table_factory=table_factory, bridge_class=CountingBridge)


@pytest.fixture
def compiled(route_a, route_b, settings):
    settings.ROUTING_SCREEN_SOURCE = ""  # nothing screened: no database at all
    settings.ROUTING_RATE_SOURCE = ""
    table = CompiledRouteTable(background=False, poll_interval=3600)
    assert table.wait_ready(10)  # loaded, and not due for a refresh in the test
    return table


EVENTS = [
    event(1),
    event(2, source_ip="198.51.100.7"),  # tenant B
    event(3, ruri="sip:+4930123@x.net"),  # no route
    event(4, source_ip="203.0.113.9"),  # unknown source
    event(5, callee=7),  # invalid: answered 400-style without a decision
]


def test_decisions_from_memory_are_made_in_the_loop_and_answered_alike(kamailio, compiled):
    with running(kamailio, lambda: compiled) as bridge:
        evapi = kamailio.accept()
        evapi.send_events(*EVENTS)
        inline = by_tindex(evapi.answers(len(EVENTS)))
        assert bridge.handed == 0
    with running(kamailio, DatabaseRouteTable) as bridge:
        evapi = kamailio.accept()
        evapi.send_events(*EVENTS)
        workers = by_tindex(evapi.answers(len(EVENTS)))
        assert bridge.handed == len(EVENTS)  # a database table: every decision in a worker
    assert {t: without_id(a) for t, a in inline.items()} == {
        t: without_id(a) for t, a in workers.items()
    }
    assert inline[1]["tenant"] == "tenant-a"
    assert inline[2]["tenant"] == "tenant-b"
    assert {route["trunk"] for route in inline[2]["routes"]} == {"b-primary", "b-backup"}


def test_a_decision_that_needs_the_database_goes_to_a_worker(kamailio, compiled, settings):
    settings.ROUTING_SCREEN_SOURCE = "blocklists.lookup.database_source"  # reads rows
    with running(kamailio, lambda: compiled) as bridge:
        evapi = kamailio.accept()
        evapi.send_events(event(1), event(2))
        answers = by_tindex(evapi.answers(2))
        assert bridge.handed == 2
    assert answers[1]["success"] is True
    assert answers[1]["tenant"] == "tenant-a"


OUTCOME = {
    "event": "sip-outcome",
    "kind": "attempt",
    "decision_id": "0123456789abcdef0123456789abcdef",
    "tenant": "tenant-a",
    "route": 0,
    "code": 200,
}


def test_an_event_after_an_unanswered_outcome_event_is_not_held_by_a_delayed_ack(
    kamailio, compiled
):
    # Kamailio's evapi socket keeps Nagle's algorithm on (as this fake's does): its next
    # small write waits for the ACK of the last one. An outcome event gets no answer,
    # so unless the bridge ACKs at once, the next routing event waits for a delayed
    # ACK (40 ms on Linux).
    with running(kamailio, lambda: compiled):
        evapi = kamailio.accept()
        evapi.send_events(event(0))
        evapi.answers(1)
        took = []
        for n in range(1, 31):
            evapi.send_events(OUTCOME)
            time.sleep(0.002)  # Kamailio sends it a moment later, in a write of its own
            started = time.monotonic()
            evapi.send_events(event(n))
            evapi.answers(1)
            took.append(time.monotonic() - started)
    took.sort()
    assert took[len(took) // 2] < 0.02, f"median {took[len(took) // 2] * 1000:.1f} ms"
