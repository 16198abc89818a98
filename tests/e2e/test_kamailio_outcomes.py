"""Kamailio reports call outcomes back, and enforces each trunk's caps, with the shipped configs.

Outcomes: each branch attempt and each answered call's end reach the engine (over
HTTP: the web server's /api/v1/kamailio/events; over EVAPI: the bridge), which
counts them in outcomes.models.OutcomeBucket/OutcomeCount; the figures must be the
calls SIPp made. Caps: the trunk's max_calls/max_cps travel in the rtjson routes and
Kamailio skips a trunk at its cap; counted in the INVITEs each SIPp carrier got.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from typing import Any

import pytest

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"end-to-end tests need {' and '.join(_missing)} on PATH", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def outcome_figures() -> tuple[dict[int, dict[str, Any]], Counter]:
    """Per trunk id, tenant e2e's buckets summed over minutes; and (trunk id, code) counts."""
    from outcomes.models import OutcomeBucket, OutcomeCount

    per_trunk: dict[int, dict[str, Any]] = {}
    for bucket in OutcomeBucket.objects.filter(tenant__slug="e2e"):
        sums = per_trunk.setdefault(
            bucket.trunk_key,
            {"attempts": 0, "answered": 0, "failed_5xx": 0, "ended": 0, "duration_s": 0.0,
             "pdd_count": 0},
        )  # fmt: skip
        sums["attempts"] += bucket.attempts
        sums["answered"] += bucket.answered
        sums["failed_5xx"] += bucket.failed_5xx
        sums["ended"] += bucket.ended
        sums["duration_s"] += bucket.duration_s_sum
        sums["pdd_count"] += bucket.pdd_count
    codes: Counter = Counter()
    for count in OutcomeCount.objects.filter(bucket__tenant__slug="e2e", kind="code"):
        codes[(count.bucket.trunk_key, count.value)] += count.count
    return per_trunk, codes


def wait_for_figures(ready, timeout: float = 10.0):
    """Poll the buckets until `ready(per_trunk, codes)`; the last figures either way."""
    deadline = time.monotonic() + timeout
    while True:
        figures = outcome_figures()
        if ready(*figures) or time.monotonic() > deadline:
            return figures
        time.sleep(0.2)


def test_attempts_and_ends_reach_the_engine_and_match_the_calls(proxy, table, sipp):
    """Route 33: a trunk that answers 503, then one that answers (serial failover).
    Route 44: the answering trunk alone. One call each, hung up after 1 s."""
    down = sipp.carrier("carrier_reject", "carrier-down")
    up = sipp.carrier("carrier_answer", "carrier-up")
    down_id = table.trunk("down", down.port)
    up_id = table.trunk("up", up.port)
    table.route("33", down_id, up_id)
    table.route("44", up_id)

    failover = sipp.call(proxy.port, "33123", calls=1, hold_ms=1000)
    direct = sipp.call(proxy.port, "44123", calls=1, hold_ms=1000)

    assert failover.finals == [200], failover.describe()
    assert direct.finals == [200], direct.describe()
    per_trunk, codes = wait_for_figures(
        lambda per_trunk, codes: (
            per_trunk.get(up_id, {}).get("ended", 0) >= 2
            and per_trunk.get(down_id, {}).get("attempts", 0) >= 1
        )
    )
    # Route 0 of the failover call: one attempt, 503.
    assert per_trunk[down_id]["attempts"] == 1, per_trunk
    assert per_trunk[down_id]["failed_5xx"] == 1, per_trunk
    assert per_trunk[down_id]["answered"] == per_trunk[down_id]["ended"] == 0, per_trunk
    assert codes[(down_id, 503)] == 1, codes
    # Route 1 of the failover call and route 0 of the direct one: answered, ended.
    assert per_trunk[up_id]["attempts"] == 2, per_trunk
    assert per_trunk[up_id]["answered"] == 2, per_trunk
    assert codes[(up_id, 200)] == 2, codes
    assert per_trunk[up_id]["ended"] == 2, per_trunk
    # Each call lasted the caller's 1 s pause (plus the ACK/BYE round trips).
    assert 1.8 <= per_trunk[up_id]["duration_s"] <= 3.0, per_trunk
    # The carrier rang (180) before answering: a post-dial delay per answered attempt.
    assert per_trunk[up_id]["pdd_count"] == 2, per_trunk
    assert set(per_trunk) == {down_id, up_id}, per_trunk


def test_a_ringing_branch_cancelled_by_the_other_answering_is_a_487_attempt(proxy, table, sipp):
    """Parallel routing: both branches are reported (the branch-failure event route)."""
    ringing = sipp.carrier("carrier_ring", "carrier-ringing")
    answering = sipp.carrier("carrier_answer", "carrier-answering")
    ringing_id = table.trunk("ringing", ringing.port)
    answering_id = table.trunk("answering", answering.port)
    table.route("44", ringing_id, answering_id, mode="parallel")

    result = sipp.call(proxy.port, "44123", calls=1)

    assert result.finals == [200], result.describe()
    per_trunk, codes = wait_for_figures(
        lambda per_trunk, codes: (
            per_trunk.get(ringing_id, {}).get("attempts", 0) >= 1
            and per_trunk.get(answering_id, {}).get("ended", 0) >= 1
        )
    )
    assert codes[(ringing_id, 487)] == 1, codes
    assert codes[(answering_id, 200)] == 1, codes
    assert per_trunk[answering_id]["ended"] == 1, per_trunk


def _set_caps(trunk_id: int, **caps: int) -> None:
    from routing.models import Trunk

    trunk = Trunk.objects.get(pk=trunk_id)
    for name, value in caps.items():
        setattr(trunk, name, value)
    trunk.save()


def test_a_trunk_at_max_calls_sends_the_next_call_to_the_next_trunk(proxy, table, sipp):
    """max_calls 5 and 6 calls held at once: the 6th goes to the second trunk."""
    capped = sipp.carrier("carrier_answer", "carrier-capped")
    spare = sipp.carrier("carrier_answer", "carrier-spare")
    capped_id = table.trunk("capped", capped.port)
    table.route("33", capped_id, table.trunk("spare", spare.port))
    _set_caps(capped_id, max_calls=5)

    # 6 calls within 0.3 s, each held 3 s: all 6 are up at the same time.
    result = sipp.call(proxy.port, "33123", calls=6, rate=20, hold_ms=3000)

    assert result.returncode == 0, result.describe()
    assert result.finals == [200] * 6, result.describe()
    capped.process.stop()
    spare.process.stop()
    assert len(capped.invites()) == 5
    assert len(spare.invites()) == 1
    assert "route 0 (SIPp carriers/capped) skipped: at its cap of 5 concurrent calls" in (
        proxy.process.log()
    )


def test_several_kamailios_each_enforce_their_share_of_a_cap(
    start_kamailio, start_bridge, table, sipp
):
    """CAP_INSTANCES=2: this Kamailio takes half of max_calls 4, so of 3 calls held at
    once the 3rd goes to the second trunk (the transport does not matter here)."""
    kamailio = start_kamailio("evapi", CAP_INSTANCES=2)
    start_bridge(kamailio)
    capped = sipp.carrier("carrier_answer", "carrier-capped")
    spare = sipp.carrier("carrier_answer", "carrier-spare")
    capped_id = table.trunk("capped", capped.port)
    table.route("33", capped_id, table.trunk("spare", spare.port))
    _set_caps(capped_id, max_calls=4)

    result = sipp.call(kamailio.port, "33123", calls=3, rate=20, hold_ms=2000)

    assert result.finals == [200] * 3, result.describe()
    capped.process.stop()
    spare.process.stop()
    assert len(capped.invites()) == 2
    assert len(spare.invites()) == 1
    assert "skipped: at its cap of 2 concurrent calls" in kamailio.process.log()


def test_a_trunk_at_max_calls_frees_its_slots_when_calls_end(proxy, table, sipp):
    """max_calls 1: calls one after the other all go to the capped trunk."""
    capped = sipp.carrier("carrier_answer", "carrier-capped")
    spare = sipp.carrier("carrier_answer", "carrier-spare")
    capped_id = table.trunk("capped", capped.port)
    table.route("33", capped_id, table.trunk("spare", spare.port))
    _set_caps(capped_id, max_calls=1)

    first = sipp.call(proxy.port, "33123", calls=1)
    second = sipp.call(proxy.port, "33123", calls=1)

    assert first.finals == second.finals == [200]
    capped.process.stop()
    spare.process.stop()
    assert len(capped.invites()) == 2
    assert spare.invites() == []


def test_every_trunk_at_its_cap_is_a_503(proxy, table, sipp):
    """One trunk, max_calls 1, two calls held at once: the second gets 503."""
    capped = sipp.carrier("carrier_answer", "carrier-capped")
    capped_id = table.trunk("capped", capped.port)
    table.route("33", capped_id)
    _set_caps(capped_id, max_calls=1)

    result = sipp.call(proxy.port, "33123", calls=2, rate=20, hold_ms=1500)

    assert sorted(result.finals) == [200, 503], result.describe()


def test_a_trunk_at_max_cps_sends_the_excess_to_the_next_trunk(proxy, table, sipp):
    """max_cps 2 and 6 calls in about 60 ms: 2 (or up to 4 across a second's edge) go to
    the capped trunk, the others to the next one."""
    capped = sipp.carrier("carrier_answer", "carrier-capped")
    spare = sipp.carrier("carrier_answer", "carrier-spare")
    capped_id = table.trunk("capped", capped.port)
    table.route("33", capped_id, table.trunk("spare", spare.port))
    _set_caps(capped_id, max_cps=2)

    result = sipp.call(proxy.port, "33123", calls=6, rate=100)

    assert result.finals == [200] * 6, result.describe()
    capped.process.stop()
    spare.process.stop()
    assert 2 <= len(capped.invites()) <= 4
    assert len(capped.invites()) + len(spare.invites()) == 6
    assert "skipped: at its cap of 2 calls per second" in proxy.process.log()


def test_parallel_routing_drops_a_branch_at_its_cap(proxy, table, sipp):
    """Parallel, the answering trunk at max_calls 1, two calls held at once: the second
    call's branch to it is dropped, so only the rejecting trunk gets that INVITE."""
    rejecting = sipp.carrier("carrier_reject", "carrier-rejecting")
    answering = sipp.carrier("carrier_answer", "carrier-answering")
    answering_id = table.trunk("answering", answering.port)
    table.route("44", table.trunk("rejecting", rejecting.port), answering_id, mode="parallel")
    _set_caps(answering_id, max_calls=1)

    result = sipp.call(proxy.port, "44123", calls=2, rate=20, hold_ms=1500)

    answering.process.stop()
    rejecting.process.stop()
    assert len(answering.invites()) == 1
    assert len(rejecting.invites()) == 2
    # A carrier's 503 reaches the caller as 500 (RFC 3261 16.7).
    assert sorted(result.finals) == [200, 500], result.describe()


def _health(trunk_id: int):
    from routing.models import TrunkHealth

    return TrunkHealth.objects.filter(trunk_id=trunk_id).first()


def _wait_for_health(trunk_id: int, ready, timeout: float = 10.0):
    """Poll the trunk's TrunkHealth row until `ready(row)`; the last row either way."""
    deadline = time.monotonic() + timeout
    while True:
        row = _health(trunk_id)
        if (row is not None and ready(row)) or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


# Engines reload a changed trunk at their next poll: within a second of the change.
LIVE_WITHIN_S = 1.2


def test_a_trunk_failing_every_call_is_taken_out_and_comes_back(proxy, table, sipp):
    """A carrier answering 503 to everything trips its trunk's policy (3 failures in a
    row); new calls then go straight to the next trunk, with no operator action. When
    the carrier answers again, the first call after the cool-down (half-open) probes it
    and brings it back. The live traffic page shows what SIPp did."""
    broken = sipp.carrier("carrier_reject", "carrier-broken")
    spare = sipp.carrier("carrier_answer", "carrier-spare")
    broken_id = table.trunk(
        "broken",
        broken.port,
        health_consecutive_failures=3,
        health_failure_ratio=None,
        health_cooldown=3,
    )
    spare_id = table.trunk("spare", spare.port)
    table.route("33", broken_id, spare_id)

    # 1. Three calls: each fails on the broken trunk and is answered by the spare one.
    tripping = sipp.call(proxy.port, "33123", calls=3, rate=5)
    assert tripping.finals == [200] * 3, tripping.describe()
    row = _wait_for_health(broken_id, lambda row: row.state == "unhealthy")
    assert row is not None
    assert row.state == "unhealthy", row
    assert row.reason == "3 failed attempts in a row", row.reason
    assert len(broken.invites()) == 3

    # 2. Taken out: the next calls go straight to the spare trunk.
    time.sleep(LIVE_WITHIN_S)
    skipping = sipp.call(proxy.port, "33123", calls=3, rate=5)
    assert skipping.finals == [200] * 3, skipping.describe()
    assert len(broken.invites()) == 3, "an unhealthy trunk got calls"
    assert len(spare.invites()) == 6

    # 3. The carrier answers again (a new SIPp on its address); after the cool-down
    # the trunk is half-open and the next call probes it, which brings it back.
    broken.process.stop()
    healed = sipp.carrier("carrier_answer", "carrier-healed", port=broken.port)
    until = _health(broken_id).until
    from django.utils import timezone

    time.sleep(max(0.0, (until - timezone.now()).total_seconds()) + 0.2)
    probing = sipp.call(proxy.port, "33123", calls=1)
    assert probing.finals == [200], probing.describe()
    assert len(healed.invites()) == 1, "the half-open trunk was not probed"
    row = _wait_for_health(broken_id, lambda row: row.state == "healthy")
    assert row.state == "healthy", row

    time.sleep(LIVE_WITHIN_S)
    back = sipp.call(proxy.port, "33123", calls=2, rate=5)
    assert back.finals == [200] * 2, back.describe()
    assert len(healed.invites()) == 3
    assert len(spare.invites()) == 6

    # The history says what happened, and the live traffic page (the admin view
    # itself) counts the attempts SIPp made: 3 failed + 3 answered on the broken trunk,
    # 6 answered on the spare one.
    from routing.models import TrunkHealthEvent

    states = [e.state for e in TrunkHealthEvent.objects.filter(trunk_id=broken_id).order_by("at")]
    assert states == ["unhealthy", "healthy"], states
    _wait_for_figures_on_page(broken_id, spare_id)


def _wait_for_figures_on_page(broken_id: int, spare_id: int, timeout: float = 10.0) -> None:
    from django.test import Client

    from tests.factories import make_operator

    client = Client()
    client.force_login(make_operator("e2e-viewer", None, is_superuser=True))
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/admin/traffic/", {"tenant": "e2e", "hours": 1})
        assert answer.status_code == 200
        rows = {row.trunk.pk: row for row, _ in answer.context["trunks"] if row.trunk}
        got = {
            pk: (rows[pk].figures.attempts, rows[pk].figures.answered, rows[pk].health)
            for pk in (broken_id, spare_id)
            if pk in rows
        }
        want = {broken_id: (6, 3, "healthy"), spare_id: (6, 6, "healthy")}
        totals = answer.context["totals"]
        # The page reads the timeline before the trunks: wait until a flush that landed
        # between the two has reached both.
        if (got, totals) == (want, {"attempts": 12, "answered": 9}) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.2)
    assert got == want
    assert totals == {"attempts": 12, "answered": 9}
    html = answer.content.decode()
    assert 'data-trunk="broken"' in html
    assert 'data-trunk="spare"' in html
