"""The in-process engine (kamailio.inprocess): the resolver inside Kamailio's Python.

What it answers must be what HTTP and EVAPI answer for the same fields; it must
keep itself current with no thread of its own, answer 503 in time when the database
does not answer, and never raise, whatever it is given.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time

import pytest

from blocklists.lookup import forget_block_stores
from kamailio import inprocess
from kamailio.requests import call_request_from_fields
from kamailio.rtjson import encode, to_rtjson
from rating.lookup import forget_rate_stores
from routing import deadline, process_local, service
from routing.compiled import forget_compiled_tables
from routing.tables import DatabaseRouteTable
from tests.evapi_bridge.test_bridge import event
from tests.factories import make_route
from tests.servers import database_unreachable
from versions.decisions import forget_decision_log
from versions.models import DecisionSample

pytestmark = pytest.mark.django_db(transaction=True)

# The threads the stores start when they may (routing.process_local).
STORE_THREADS = {"route-table-poller", "route-table-builder", "blocklist-store-poller",
                 "decision-log"}  # fmt: skip


def _forget_stores() -> None:
    forget_compiled_tables()
    forget_rate_stores()
    forget_block_stores()
    forget_decision_log()


@pytest.fixture
def thread_free(settings):
    """This process as a Kamailio SIP worker sees it: compiled stores, no store threads."""
    settings.ROUTING_TABLE = "compiled"
    settings.ROUTING_RATE_SOURCE = "rating.lookup.rate_source"
    settings.ROUTING_SCREEN_SOURCE = "blocklists.lookup.compiled_source"
    _forget_stores()
    process_local.without_threads()
    try:
        yield
    finally:
        process_local.allow_threads()
        _forget_stores()
        deadline.close_pool_connections()  # the engine's waits ran there


def fields(**changes) -> dict:
    """The fields the KEMI script sends: a routing event without the transaction ids."""
    body = event(1, **changes)
    for name in ("tindex", "tlabel"):
        body.pop(name)
    return body


def without_id(answer: dict) -> dict:
    return {name: value for name, value in answer.items() if name != "decision_id"}


def expected(body: dict) -> dict:
    """What HTTP and EVAPI answer for these fields (their shared steps, kamailio.rtjson)."""
    decision = service.decide(call_request_from_fields(body), table=DatabaseRouteTable())
    return without_id(json.loads(encode(to_rtjson(decision))))


CALLS = [
    fields(),  # tenant A, routed
    fields(source_ip="198.51.100.7"),  # tenant B, its own trunks
    fields(ruri="sip:+4930123@x.net"),  # no route
    fields(source_ip="203.0.113.9"),  # unknown source
]


def test_answers_what_http_and_evapi_answer(thread_free, route_a, route_b):
    engine = inprocess.Engine()
    assert engine.warm_up(10) == []
    for body in CALLS:
        answer = json.loads(engine.answer(body))
        assert answer["decision_id"]
        assert without_id(answer) == expected(body)
    tenant_b = json.loads(engine.answer(CALLS[1]))
    assert tenant_b["tenant"] == "tenant-b"
    assert {route["trunk"] for route in tenant_b["routes"]} == {"b-primary", "b-backup"}
    # The same fields as JSON text (what a script may hand over as it built them).
    assert without_id(json.loads(engine.answer(json.dumps(CALLS[0])))) == expected(CALLS[0])


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (fields(callee=7), "Bad Request: callee: must be a string"),
        (fields(ruri="sip:", to_uri=None, callee=None), "Bad Request: ruri"),
        ('{"callee": ', "Bad Request: fields are not JSON"),
        (b"\xff\xfe", "Bad Request: fields are not JSON"),
        ("[1, 2]", "Bad Request: fields are a list, not an object"),
        (None, "Bad Request: fields are a NoneType, not an object"),
    ],
)
def test_what_is_no_call_gets_a_400_naming_the_problem(thread_free, route_a, given, reason):
    answer = json.loads(inprocess.Engine().answer(given))
    assert answer["success"] is False
    assert answer["code"] == 400
    assert answer["reason"].startswith(reason)
    assert answer["reason"].isascii()
    assert len(answer["reason"]) <= 120


def test_no_store_starts_a_thread_and_a_change_is_seen_within_the_poll_interval(
    thread_free, route_a, tenant_a, trunks_a
):
    engine = inprocess.Engine()
    engine.warm_up(10)
    number = fields(ruri="sip:+4930123@x.net")
    assert json.loads(engine.answer(number))["code"] == 404
    make_route(tenant_a, "49", *trunks_a)  # a change, committed (another session's)
    time.sleep(engine.poll_interval + 0.05)
    answer = json.loads(engine.answer(number))
    assert answer["success"] is True
    assert answer["prefix"] == "49"
    running = {thread.name for thread in threading.enumerate()}
    assert not running & STORE_THREADS, running & STORE_THREADS


def test_sampled_decisions_are_written_by_the_upkeep(thread_free, route_a, settings):
    settings.ROUTING_DECISION_SAMPLE_PERCENT = 100
    engine = inprocess.Engine()
    engine.warm_up(10)
    decision_id = json.loads(engine.answer(fields()))["decision_id"]
    engine.upkeep()
    sample = DecisionSample.objects.get(decision_id=decision_id)
    assert sample.transport == inprocess.TRANSPORT


def test_a_database_that_does_not_answer_gets_a_503(thread_free, route_a, settings, tmp_path):
    settings.ROUTING_TABLE = "database"  # every decision needs the database
    settings.ROUTING_RATE_SOURCE = ""
    settings.ROUTING_SCREEN_SOURCE = ""
    engine = inprocess.Engine()
    assert json.loads(engine.answer(fields()))["success"] is True
    with database_unreachable(tmp_path):
        # The engine waits for the database in a pool thread: its open connection
        # breaks too, as a real outage would break it.
        deadline.close_pool_connections()
        answer = json.loads(engine.answer(fields()))
    assert (answer["success"], answer["code"]) == (False, 503)
    assert answer["reason"] == "Routing Database Unavailable"
    # And once it answers again, so does the engine (the broken connection was dropped).
    assert json.loads(engine.answer(fields()))["success"] is True


def test_start_sets_up_and_loads(thread_free, route_a):
    try:
        engine = inprocess.start(warm_up=10)
    finally:
        gc.unfreeze()  # start() freezes what a worker loaded; a test process keeps collecting
    assert engine.table.ready()
    assert json.loads(engine.answer(fields()))["success"] is True


def test_a_worker_forked_after_preload_answers_from_the_tables_loaded_before(
    thread_free, route_a, tenant_a, trunks_a
):
    try:
        assert inprocess.preload(warm_up=10) == []
    finally:
        gc.unfreeze()
    make_route(tenant_a, "49", *trunks_a)  # changed after the preload, before the call
    time.sleep(0.25)  # no answer is staler than the poll interval (0.2 s)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a SIP worker
        code = 1
        try:
            engine = inprocess.start()
            answers = [json.loads(engine.answer(fields(ruri=f"sip:{n}@x.net"))) for n in (33, 49)]
            os.write(write, json.dumps(answers).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answers = json.loads(pipe.read() or b"null")
    assert os.waitpid(pid, 0)[1] == 0
    assert [answer.get("prefix", answer.get("reason")) for answer in answers] == ["33", "49"]
