"""The EVAPI bridge while PostgreSQL hangs (a freezing proxy), with either route table.

The database table must answer 503 "Routing Database Unavailable" by the deadline;
the compiled table, with the tenant loaded, keeps routing from memory; both route
again within a second of the database answering.
"""

from __future__ import annotations

import time

import pytest

from routing.compiled import CompiledRouteTable
from routing.tables import DatabaseRouteTable
from tests.evapi_bridge.test_bridge import event, running_bridge
from tests.reliability.conftest import DEADLINE, SLACK, AnswerLog

pytestmark = pytest.mark.django_db(transaction=True)

FREEZE = 2.5  # seconds the database hangs
PACE = 0.05  # seconds between events during the freeze


@pytest.mark.parametrize("kind", ["database", "compiled"])
def test_every_event_is_answered_by_its_deadline_while_the_database_hangs(
    kind, kamailio, route_a, through_proxy, settings
):
    proxy = through_proxy
    compiled = None
    if kind == "compiled":
        # What ROUTING_TABLE=compiled sets up: the blocklists from memory too.
        settings.ROUTING_SCREEN_SOURCE = "blocklists.lookup.compiled_source"
        compiled = CompiledRouteTable(poller=True)
        assert compiled.wait_ready(10)

        def table_factory():
            return compiled
    else:
        table_factory = DatabaseRouteTable
    try:
        with running_bridge(kamailio, workers=4, table_factory=table_factory, deadline=DEADLINE):
            log = AnswerLog(kamailio.accept())
            try:
                log.send(event(0))
                log.wait_for([0], timeout=5)
                assert log.of(0)[0][1]["success"] is True

                proxy.freeze()
                frozen_at = time.monotonic()
                tindex = 1
                while time.monotonic() - frozen_at < FREEZE - 0.5:
                    log.send(event(tindex))
                    tindex += 1
                    time.sleep(PACE)
                log.send(*(event(n) for n in range(tindex, tindex + 20)))  # and a burst
                during = range(1, tindex + 20)
                log.wait_for(during, timeout=DEADLINE + 1)
                assert proxy.frozen
                latencies = []
                for n in during:
                    answers = log.of(n)
                    assert len(answers) == 1, (n, answers)
                    seconds, answer = answers[0]
                    latencies.append(seconds)
                    assert seconds <= DEADLINE + SLACK, (n, seconds)
                    if kind == "compiled":  # from memory, as of the last version seen
                        assert answer["success"] is True, answer
                    else:
                        assert (answer["success"], answer["code"]) == (False, 503)
                        assert answer["reason"] == "Routing Database Unavailable"
                time.sleep(max(0.0, FREEZE - (time.monotonic() - frozen_at)))

                proxy.thaw()
                thawed_at = time.monotonic()
                first_routed = None
                n = 1000
                while time.monotonic() - thawed_at < 2 and first_routed is None:
                    log.send(event(n))
                    log.wait_for([n], timeout=DEADLINE + SLACK)
                    if any(answer["success"] for _, answer in log.of(n)):
                        first_routed = time.monotonic() - thawed_at
                    n += 1
                    time.sleep(0.02)
                assert first_routed is not None, "not routed within 2 s of the thaw"
                assert first_routed < 1.0, first_routed
                time.sleep(0.5)  # late answers of the stuck workers would show up here
                counts: dict[int, int] = {}
                for _, answer in log.answers:
                    counts[answer["xtra"]["tindex"]] = counts.get(answer["xtra"]["tindex"], 0) + 1
                assert set(counts.values()) == {1}, "an event was answered twice"
                assert len(counts) == len(log.sent)
                latencies.sort()
                print(
                    f"\n[{kind}] bridge during a {FREEZE} s freeze: {len(latencies)} events, "
                    f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
                    f"max {latencies[-1] * 1000:.0f} ms; routed again {first_routed:.3f} s "
                    "after thaw"
                )
            finally:
                log.close()
    finally:
        if compiled is not None:
            compiled.stop()
