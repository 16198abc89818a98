"""Route rules with the shipped Kamailio configs and SIPp: a time window and a caller condition.

The schedules and routes are made through the REST API (as an operator would); the
engine evaluates them at each call's time, so a switch at an instant needs no
change to the table when it comes.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.processes import HOST

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"end-to-end tests need {' and '.join(_missing)} on PATH", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SWITCH_AFTER = 4.0  # seconds from now: long enough to place the first call before it


def scheduled_route(table, prefix: str, trunk: int, schedule: int, **fields) -> None:
    table.api.post(
        "prefixes",
        {"tenant": "e2e", "prefix": prefix, "schedule": schedule,
         "targets": [{"trunk": trunk}], **fields},
    )  # fmt: skip


def test_a_time_window_switches_carriers_at_its_instant(proxy, table, sipp):
    """Route 44 to carrier A valid until T, and to carrier B valid from T."""
    carrier_a = sipp.carrier("carrier_answer", "carrier-a")
    carrier_b = sipp.carrier("carrier_answer", "carrier-b")
    a, b = table.trunk("a", carrier_a.port), table.trunk("b", carrier_b.port)
    switch = datetime.now(UTC) + timedelta(seconds=SWITCH_AFTER)
    until = table.api.post(
        "schedules", {"tenant": "e2e", "name": "Until T", "valid_until": switch.isoformat()}
    )["id"]
    since = table.api.post(
        "schedules", {"tenant": "e2e", "name": "From T", "valid_from": switch.isoformat()}
    )["id"]
    scheduled_route(table, "44", a, until)
    scheduled_route(table, "44", b, since)

    before = sipp.call(proxy.port, "44123", calls=1)
    assert datetime.now(UTC) < switch, "the first call ended after the switch: too slow a host"
    time.sleep(max(0.0, (switch - datetime.now(UTC)).total_seconds()) + 0.3)
    after = sipp.call(proxy.port, "44123", calls=1)

    assert before.finals == [200], before.describe()
    assert after.finals == [200], after.describe()
    carrier_a.process.stop()
    carrier_b.process.stop()
    assert [i.ruri for i in carrier_a.invites()] == [f"sip:44123@{HOST}:{carrier_a.port}"]
    assert [i.ruri for i in carrier_b.invites()] == [f"sip:44123@{HOST}:{carrier_b.port}"]


def test_a_caller_condition_picks_the_carrier(proxy, table, sipp):
    """Route 55: caller 3312... to carrier B, anyone else to carrier A."""
    carrier_a = sipp.carrier("carrier_answer", "carrier-a")
    carrier_b = sipp.carrier("carrier_answer", "carrier-b")
    a, b = table.trunk("a", carrier_a.port), table.trunk("b", carrier_b.port)
    table.route("55", a)
    table.api.post(
        "prefixes",
        {"tenant": "e2e", "prefix": "55", "caller_prefix": "3312", "targets": [{"trunk": b}]},
    )

    from_3312 = sipp.call(proxy.port, "55123", calls=2, caller="331299")
    from_other = sipp.call(proxy.port, "55123", calls=1, caller="4411")

    assert from_3312.finals == [200, 200], from_3312.describe()
    assert from_other.finals == [200], from_other.describe()
    carrier_a.process.stop()
    carrier_b.process.stop()
    assert len(carrier_b.invites()) == 2
    assert len(carrier_a.invites()) == 1
