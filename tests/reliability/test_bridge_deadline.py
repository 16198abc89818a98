"""The bridge's deadline without a database trick: decisions that block, on any database.

Every event gets exactly one answer by its deadline even when every worker is
stuck; the stuck workers' answers come late and are dropped; events answered
while queued are not decided at all.
"""

from __future__ import annotations

import threading

import pytest

from routing.tables import DatabaseRouteTable
from tests.evapi_bridge.test_bridge import event, running_bridge
from tests.reliability.conftest import DEADLINE, SLACK, AnswerLog

pytestmark = pytest.mark.django_db(transaction=True)

RELEASE = threading.Event()


class HungTable(DatabaseRouteTable):
    """The real table, whose route lookup hangs until RELEASE (a database that hangs)."""

    decided = 0

    def routes(self, tenant_id: int, candidates: list[str], version):
        RELEASE.wait(10)
        HungTable.decided += 1
        return super().routes(tenant_id, candidates, version)


def test_every_event_is_answered_once_by_its_deadline_while_every_worker_hangs(kamailio, route_a):
    RELEASE.clear()
    HungTable.decided = 0
    try:
        with running_bridge(kamailio, workers=2, table_factory=HungTable, deadline=DEADLINE) as b:
            log = AnswerLog(kamailio.accept())
            try:
                log.send(*(event(n) for n in range(10)))
                log.wait_for(range(10), timeout=2)
                for n in range(10):
                    [(seconds, answer)] = log.of(n)
                    assert seconds <= DEADLINE + SLACK, (n, seconds)
                    assert (answer["success"], answer["code"]) == (False, 503)
                    assert answer["reason"] == "Routing Database Unavailable"
                    assert answer["xtra"] == {"tindex": n, "tlabel": n * 7 + 1}
                RELEASE.set()  # the database answers again: the two stuck decisions end
                log.send(event(20))
                log.wait_for([20], timeout=1)
                [(seconds, answer)] = log.of(20)
                assert answer["success"] is True
                assert seconds < 1
                assert kamailio.clients[0].nothing_within(0.3)
                assert len(log.answers) == 11  # exactly one answer per event
                assert b.late == 2  # the stuck workers' answers were dropped
                assert HungTable.decided == 3  # the 8 queued events were not decided
            finally:
                log.close()
    finally:
        RELEASE.set()
