"""A decision reads one version, whatever is published meanwhile; publishes serialise."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

from routing.compiled import CompiledRouteTable
from routing.models import DialPrefix
from routing.resolver import CallRequest
from routing.service import decide
from routing.tables import DatabaseRouteTable
from tests.factories import default_plan, make_route
from versions.models import PlanVersion
from versions.publishing import PublishRefused, publish, rollback

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_versions(tenant_a, trunks_a):
    """Version 1: 4420 and 44 both to a-primary. Version 2: 4420 gone, 44 to a-backup.

    A call to 4420... gets (4420, a-primary) from version 1 and (44, a-backup) from
    version 2; (44, a-primary) would be version 2's prefixes with version 1's targets,
    or the reverse: a mix."""
    primary, backup = trunks_a
    london = make_route(tenant_a, "4420", primary)
    uk = make_route(tenant_a, "44", primary)
    plan = default_plan(tenant_a)
    publish(plan)
    london.delete()
    uk.targets.update(trunk=backup)
    publish(plan)
    return plan


def _answers(table, stop: threading.Event, seen: set, errors: list) -> None:
    try:
        while not stop.is_set():
            decision = decide(
                CallRequest(callee="442071234567", source_ip="192.0.2.10"), table=table
            )
            seen.add((decision.matched.prefix, decision.routes[0].trunk, decision.plan_version))
    except Exception as exc:  # reported by the test
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.parametrize("kind", ["database", "compiled"])
def test_no_decision_mixes_two_versions_while_publishes_flip_them(two_versions, kind):
    table = (
        DatabaseRouteTable()
        if kind == "database"
        else CompiledRouteTable(poll_interval=0.01, background=True, poller=True)
    )
    stop, seen, errors = threading.Event(), set(), []
    threads = [
        threading.Thread(target=_answers, args=(table, stop, seen, errors)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            # The previous version always has the other routes: odd versions are
            # version 1's, even ones version 2's (and retention prunes as it goes).
            two_versions.refresh_from_db()
            rollback(two_versions, two_versions.published_version - 1)
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        if kind == "compiled":
            table.stop()
    assert not errors
    routes = {(prefix, trunk) for prefix, trunk, _ in seen}
    assert routes <= {("4420", "a-primary"), ("44", "a-backup")}, routes
    assert routes == {("4420", "a-primary"), ("44", "a-backup")}  # both were seen
    # Each answer's version is one whose routes it had (odd: version 1's, even: 2's).
    by_version = {version: (prefix, trunk) for prefix, trunk, version in seen}
    for version, route in by_version.items():
        expected = ("4420", "a-primary") if version % 2 else ("44", "a-backup")
        assert route == expected, (version, route)


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="row locks serialise publishes on PostgreSQL"
)
def test_two_operators_publishing_at_once_publish_once(tenant_a, route_a):
    plan = default_plan(tenant_a)
    publish(plan)
    DialPrefix.objects.filter(pk=route_a.pk).update(description="both saw this")
    results: list = []
    barrier = threading.Barrier(2)

    def publisher() -> None:
        try:
            barrier.wait(5)
            results.append(publish(default_plan(tenant_a), expected=1).version.number)
        except PublishRefused as refused:
            results.append(str(refused))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=publisher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results, key=str) == [2, results[1] if results[0] == 2 else results[0]]
    refused = next(r for r in results if isinstance(r, str))
    assert "is at version 2 now" in refused
    assert PlanVersion.objects.filter(plan=plan).count() == 2
    assert connection.vendor == "postgresql"
