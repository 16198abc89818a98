"""Versions of a staged plan with the shipped Kamailio configs and SIPp: calls switch
carriers when a version is published, and switch back on rollback.

The engine runs production's compiled route table (ROUTING_TABLE=compiled): each
gunicorn worker and the bridge keep the plan in memory and follow the change log
every POLL_INTERVAL seconds, from their own poller thread. The draft is edited with
the ORM (the saved routes, whatever writes them) and published with
versions.publishing from this process, so the instant publish() returns is known.

Each phase calls its own number under prefix 46 (46100, 46200, ...), and each carrier
logs the request URI of every INVITE it gets: the counts per carrier and number, read
once the carriers have stopped (their logs flushed), say exactly which version every
call used.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter

import pytest

from tests.e2e.processes import HOST
from tests.e2e.services import service_env

_missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"end-to-end tests need {' and '.join(_missing)} on PATH", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# routing.compiled.live.CompiledRouteTable's poll interval: a publish is used by every
# process within it. SLACK covers applying the change (a few queries) on a busy host.
POLL_INTERVAL = 0.2
SLACK = 0.1
CALLS = 5  # per phase


@pytest.fixture(scope="module")
def engine_env() -> dict[str, str]:
    return service_env(ROUTING_TABLE="compiled")


def numbers_at(carrier) -> Counter:
    """How many INVITEs `carrier` got per called number."""
    return Counter(invite.ruri.split(":", 1)[1].split("@", 1)[0] for invite in carrier.invites())


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_calls_switch_carriers_when_a_version_is_published_and_back_on_rollback(proxy, table, sipp):
    from routing.models import RouteTarget, RoutingPlan
    from versions.publishing import publish, rollback

    carrier_a = sipp.carrier("carrier_answer", "carrier-a")
    carrier_b = sipp.carrier("carrier_answer", "carrier-b")
    a, b = table.trunk("a", carrier_a.port), table.trunk("b", carrier_b.port)
    table.route("46", a)
    plan = RoutingPlan.objects.get(tenant__slug="e2e", name="Default")
    first = publish(plan, comment="e2e: 46 to carrier A").version.number
    staged = time.monotonic()

    # The draft sends 46 to B; calls keep version 1 (A), also once every process has
    # seen the edit in the change log.
    assert RouteTarget.objects.filter(prefix__plan=plan, prefix__prefix="46").update(trunk=b) == 1
    wait_until(max(staged, time.monotonic()) + POLL_INTERVAL + SLACK)
    draft_only = sipp.call(proxy.port, "46100", calls=CALLS)

    published = publish(plan, comment="e2e: 46 to carrier B").version.number
    returned = time.monotonic()
    wait_until(returned + POLL_INTERVAL + SLACK)
    after_publish = sipp.call(proxy.port, "46200", calls=CALLS)

    # Calls placed while a publish commits: each gets one carrier, none fails.
    during: list = []
    stream = threading.Thread(
        target=lambda: during.append(sipp.call(proxy.port, "46150", calls=2 * CALLS, rate=20))
    )
    stream.start()
    time.sleep(0.3)  # SIPp started and placing calls
    rolled_back = rollback(plan, first, comment="e2e: back to A").version.number
    rolled_back_at = time.monotonic()
    stream.join(60)
    wait_until(rolled_back_at + POLL_INTERVAL + SLACK)
    after_rollback = sipp.call(proxy.port, "46300", calls=CALLS)

    for result in (draft_only, after_publish, *during, after_rollback):
        assert result.returncode == 0, result.describe()
        assert result.finals == [200] * len(result.finals), result.describe()
    assert (first, published, rolled_back) == (1, 2, 3)
    carrier_a.process.stop()
    carrier_b.process.stop()
    at_a, at_b = numbers_at(carrier_a), numbers_at(carrier_b)
    # Before the publish returned: version 1 only, the edited draft never.
    assert (at_a["46100"], at_b["46100"]) == (CALLS, 0)
    # Every call from the publish + the poll interval on: version 2.
    assert (at_a["46200"], at_b["46200"]) == (0, CALLS)
    # Across the rollback: one carrier per call, every call answered.
    assert len(during[0].finals) == 2 * CALLS
    assert at_a["46150"] + at_b["46150"] == 2 * CALLS
    # From the rollback + the poll interval on: version 1's routes again.
    assert (at_a["46300"], at_b["46300"]) == (CALLS, 0)
    assert set(at_a) | set(at_b) == {"46100", "46150", "46200", "46300"}
    assert all(
        invite.ruri.endswith(f"@{HOST}:{carrier.port}")
        for carrier in (carrier_a, carrier_b)
        for invite in carrier.invites()
    )
