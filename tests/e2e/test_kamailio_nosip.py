"""Answers by nosip datagrams through a real Kamailio (kamailio-evapi.cfg WITH_NOSIP).

The bridge reads events over EVAPI and sends each answer as a UDP datagram to
Kamailio's SIP port, where a SIP worker resumes the call. Bad datagrams (from a
stranger, malformed, cut short, for a transaction that is gone, with the wrong key)
are dropped with at most one log line a second per kind, and Kamailio goes on
routing calls. The routing cases themselves also run through this path
(test_kamailio_routing.py, proxy "evapi-nosip").
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
import time

import pytest

from tests.e2e.processes import HOST
from tests.e2e.services import BASE_DIR, Kamailio, service_env
from tests.e2e.test_kamailio_routing import BrokenEngine

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"end-to-end tests need {' and '.join(_missing)} on PATH", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

_SUMMARY = re.compile(r"stopped; since start-up .*answers by nosip (\d+), by EVAPI (\d+)")
# A real answer's shape (kamailio.evapi), for the datagrams the tests forge.
ANSWER = {"version": "1.0", "success": True, "routing": "serial", "routes": []}


def channels(bridge) -> tuple[int, int]:
    """(by nosip, by EVAPI) from the bridge's summary line at exit (stop it first)."""
    found = _SUMMARY.search(bridge.log())
    assert found, f"no nosip counts in the bridge's summary:\n{bridge.describe()}"
    return int(found[1]), int(found[2])


def send_datagrams(kamailio: Kamailio, *payloads: bytes, source: str = HOST) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for payload in payloads:
            sock.sendto(payload, (HOST, kamailio.port))


def answer(tindex: int, tlabel: int) -> bytes:
    """An answer as the bridge writes it (compact JSON, xtra last)."""
    document = {**ANSWER, "xtra": {"tindex": tindex, "tlabel": tlabel}}
    return json.dumps(document, separators=(",", ":")).encode()


def dropped_lines(kamailio: Kamailio, kind: str, after: int = 0) -> list[str]:
    return [
        line
        for line in kamailio.process.log()[after:].splitlines()
        if f"nosip datagram dropped ({kind})" in line
    ]


def start_bridge_with_key(processes, kamailio: Kamailio, key: str):
    """A bridge answering by nosip with EVAPI_NOSIP_KEY=key (from the environment)."""
    seen = len(kamailio.process.log())
    bridge = processes.start(
        "bridge",
        [sys.executable, "manage.py", "run_evapi_bridge", "--stats-interval", "0",
         "--connect", f"{HOST}:{kamailio.evapi_port}", "--nosip", f"{HOST}:{kamailio.port}"],
        cwd=BASE_DIR,
        env=service_env(EVAPI_NOSIP_KEY=key),
    )  # fmt: skip
    kamailio.process.wait_for_log("routing engine connected from", after=seen)
    return bridge


@pytest.fixture
def routed(table, sipp):
    """Calls to 33... go to a carrier that answers."""
    carrier = sipp.carrier("carrier_answer", "carrier")
    table.route("33", table.trunk("up", carrier.port))
    return carrier


def test_calls_are_answered_by_nosip_datagrams(start_kamailio, start_bridge, routed, sipp):
    kamailio = start_kamailio("evapi", WITH_NOSIP=1, SIP_WORKERS=4)
    bridge = start_bridge(kamailio, "--nosip", f"{HOST}:{kamailio.port}")

    result = sipp.call(kamailio.port, "33123", calls=6, rate=20)
    bridge.stop()

    assert result.finals == [200] * 6, result.describe()
    assert channels(bridge) == (6, 0)
    assert not dropped_lines(kamailio, ""), kamailio.process.describe()


def test_answers_too_large_for_a_datagram_come_over_evapi(
    start_kamailio, start_bridge, routed, sipp
):
    kamailio = start_kamailio("evapi", WITH_NOSIP=1)
    bridge = start_bridge(kamailio, "--nosip", f"{HOST}:{kamailio.port}", "--nosip-max-bytes", "64")

    result = sipp.call(kamailio.port, "33123", calls=2)
    bridge.stop()

    assert result.finals == [200, 200], result.describe()
    assert channels(bridge) == (0, 2)


def test_bad_datagrams_are_dropped_and_calls_are_still_routed(
    start_kamailio, start_bridge, routed, sipp
):
    kamailio = start_kamailio("evapi", WITH_NOSIP=1, NOSIP_ENGINES=f"{HOST}/32")
    start_bridge(kamailio, "--nosip", f"{HOST}:{kamailio.port}")
    seen = len(kamailio.process.log())

    whole = answer(1234, 5678)
    send_datagrams(kamailio, whole, source="127.0.0.2")  # not in NOSIP_ENGINES
    send_datagrams(
        kamailio,
        b'{"this is": "not an answer", "no": "xtra at all"}',
        b'{not json, "xtra":{"tindex":1,"tlabel":2}}',  # ends like an answer
        whole[: len(whole) // 2],  # cut short
        whole,  # a transaction that is not there
    )
    for kind in ("stranger", "malformed", "gone"):
        kamailio.process.wait_for_log(f"nosip datagram dropped ({kind})", after=seen)
    result = sipp.call(kamailio.port, "33123")

    assert result.finals == [200, 200], result.describe()
    assert kamailio.process.running
    assert "127.0.0.2" in dropped_lines(kamailio, "stranger", seen)[0]


def test_a_burst_of_bad_datagrams_logs_about_one_line_a_second_per_kind(
    start_kamailio, start_bridge, routed, sipp
):
    kamailio = start_kamailio("evapi", WITH_NOSIP=1, NOSIP_ENGINES=f"{HOST}/32")
    start_bridge(kamailio, "--nosip", f"{HOST}:{kamailio.port}")
    seen = len(kamailio.process.log())

    not_json = b'{not json, "xtra":{"tindex":1,"tlabel":2}}'  # ends like an answer
    started = time.monotonic()
    for number in range(10):  # 1,000 datagrams of each kind over about 2 s
        send_datagrams(kamailio, *[b"{" + b"x" * 40] * 100)
        send_datagrams(kamailio, *[answer(4000 + number, 1)] * 100, source="127.0.0.3")
        send_datagrams(kamailio, *[answer(5000 + number, 1)] * 100)  # no such transaction
        send_datagrams(kamailio, *[not_json] * 100)
        time.sleep(0.2)
    seconds = time.monotonic() - started
    time.sleep(0.5)  # the last ones read
    result = sipp.call(kamailio.port, "33123")

    assert result.finals == [200, 200], result.describe()
    for kind in ("malformed", "stranger", "gone"):
        lines = dropped_lines(kamailio, kind, seen)
        assert 1 <= len(lines) <= 2 * (int(seconds) + 2), (kind, lines)
    # Nor do the modules the datagrams reach (jansson, tm) log a line for each.
    others = [
        line
        for line in kamailio.process.log()[seen:].splitlines()
        if ("ERROR" in line or "WARNING" in line) and "nosip datagram dropped" not in line
    ]
    assert len(others) <= 10, others[:20]


def test_a_stranger_cannot_resume_a_call_even_with_its_real_ids(
    start_kamailio, start_bridge, routed, sipp
):
    # The bridge's own answers (right tindex/tlabel) come from 127.0.0.1, outside
    # NOSIP_ENGINES: dropped, and the calls get their 503 at ENGINE_TIMEOUT_MS.
    kamailio = start_kamailio(
        "evapi", WITH_NOSIP=1, NOSIP_ENGINES="127.0.0.2/32", ENGINE_TIMEOUT_MS=1000
    )
    start_bridge(kamailio, "--nosip", f"{HOST}:{kamailio.port}")

    result = sipp.call(kamailio.port, "33123")

    assert result.finals == [503, 503], result.describe()
    assert routed.invites() == []
    assert dropped_lines(kamailio, "stranger"), kamailio.process.describe()


def test_with_a_key_only_answers_that_carry_it_resume_calls(
    start_kamailio, processes, routed, sipp
):
    kamailio = start_kamailio("evapi", WITH_NOSIP=1, NOSIP_KEY="right", ENGINE_TIMEOUT_MS=1000)

    wrong = start_bridge_with_key(processes, kamailio, "wrong")
    refused = sipp.call(kamailio.port, "33123")
    seen = len(kamailio.process.log())
    wrong.stop()
    kamailio.process.wait_for_log("disconnected", after=seen)
    right = start_bridge_with_key(processes, kamailio, "right")
    accepted = sipp.call(kamailio.port, "33123")
    right.stop()

    assert refused.finals == [503, 503], refused.describe()
    assert dropped_lines(kamailio, "key"), kamailio.process.describe()
    assert accepted.finals == [200, 200], accepted.describe()
    assert channels(right) == (2, 0)


def test_a_call_its_engine_leaves_unanswered_is_asked_again_and_answered_by_nosip(
    start_kamailio, start_bridge, routed, sipp
):
    # Hot standby (failure_route ENGINE_NO_ANSWER): an engine that reads events and
    # never answers, and a bridge answering by nosip. Calls hashed to the silent one
    # are asked again of the bridge after ENGINE_RETRY_MS, and resumed by its datagram.
    kamailio = start_kamailio("evapi", WITH_NOSIP=1, ENGINE_RETRY_MS=400, ENGINE_TIMEOUT_MS=2000)
    seen = len(kamailio.process.log())
    silent = BrokenEngine(kamailio.evapi_port, None)
    try:
        kamailio.process.wait_for_log("routing engine connected from", after=seen)
        bridge = start_bridge(kamailio, "--nosip", f"{HOST}:{kamailio.port}")
        # 12 calls: the chance that none is hashed to the silent engine is 1 in 4,096.
        result = sipp.call(kamailio.port, "33123", calls=12, rate=20)
    finally:
        silent.close()
    bridge.stop()

    assert result.finals == [200] * 12, result.describe()
    assert "within ENGINE_RETRY_MS: asked e" in kamailio.process.log(), kamailio.process.describe()
    by_nosip, by_evapi = channels(bridge)
    assert (by_nosip, by_evapi) == (12, 0)
