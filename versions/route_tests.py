"""Route tests: saved calls with expectations, decided by the real engine.

A test is decided like a simulation (routing.service.decide over the process's route
table, scoped to the test's tenant) with a fixed Call-ID, so a weighted order is the
same every run. Before a publish the plan's tests run against its draft (pins.draft);
on demand, against the draft, the live version or any kept version.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from routing.models import RoutingPlan, Trunk
from routing.resolver import CallRequest, Decision
from routing.service import decide, get_route_table
from routing.simulation import OwnTenantTable, Pin, PinnedTable, SimulationRefused
from versions import pins
from versions.models import RouteTest


@dataclass(frozen=True)
class TestResult:
    """One test's run: passed, or the problems found, with the decision it got."""

    __test__ = False  # not a pytest class

    test: RouteTest
    problems: tuple[str, ...]
    decision: Decision | None = None

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def message(self) -> str:
        return "passed" if self.passed else "; ".join(self.problems)


def request_of(test: RouteTest) -> CallRequest:
    """The call a test makes: by its customer, its source address, or its plan."""
    common = {
        "callee": test.callee,
        "caller": test.caller,
        "at": test.at,
        "call_id": f"route-test-{test.pk}",
    }
    if test.source_ip:
        return CallRequest(source_ip=test.source_ip, **common)
    tenant = test.tenant.slug
    if test.customer_id:
        return CallRequest(tenant=tenant, customer=test.customer.name, **common)
    return CallRequest(tenant=tenant, plan=test.plan.name, **common)


def check(test: RouteTest, decision: Decision, trunks: set[str]) -> tuple[str, ...]:
    """What the decision got wrong of the test's expectations (nothing: passed)."""
    problems = []
    if test.expect_outcome and str(decision.outcome) != test.expect_outcome:
        problems.append(
            f"expected outcome {test.expect_outcome}, got {decision.outcome} "
            f"({decision.code} {decision.reason})"
        )
    if test.expect_code and decision.code != test.expect_code:
        problems.append(f"expected SIP code {test.expect_code}, got {decision.code}")
    got = [route.trunk for route in decision.routes]
    named = [test.expect_first_trunk] if test.expect_first_trunk else []
    missing = [name for name in (*named, *test.trunk_order()) if name not in trunks]
    for name in dict.fromkeys(missing):
        problems.append(f"trunk {name!r} no longer exists: fix the test")
    if test.expect_first_trunk and not missing:
        first = got[0] if got else "no trunk"
        if first != test.expect_first_trunk:
            problems.append(f"expected first trunk {test.expect_first_trunk}, got {first}")
    order = test.trunk_order()
    if order and not missing and got != order:
        problems.append(
            f"expected trunk order {', '.join(order)}, got {', '.join(got) or 'no trunk'}"
        )
    return tuple(problems)


def run(
    tests: QuerySet[RouteTest] | list[RouteTest], *, pin: Pin | None = None
) -> list[TestResult]:
    """Run `tests` (every one a tenant's) reading plans as `pin` says (None: live)."""
    results = []
    tables: dict[int, object] = {}
    trunk_names: dict[int, set[str]] = {}
    for test in tests:
        table = tables.get(test.tenant_id)
        if table is None:
            inner = get_route_table()
            if pin is not None:
                inner = PinnedTable(inner, pin)
            table = tables[test.tenant_id] = OwnTenantTable(inner, test.tenant_id)
        if test.tenant_id not in trunk_names:
            trunk_names[test.tenant_id] = set(
                Trunk.objects.filter(carrier__tenant_id=test.tenant_id).values_list(
                    "name", flat=True
                )
            )
        try:
            decision = decide(request_of(test), table=table)
        except SimulationRefused as refused:
            results.append(TestResult(test, (str(refused),)))
            continue
        results.append(
            TestResult(test, check(test, decision, trunk_names[test.tenant_id]), decision)
        )
    return results


def record(results: list[TestResult]) -> None:
    """Keep each test's last result on it (the admin's list shows them)."""
    now = timezone.now()
    for result in results:
        RouteTest.objects.filter(pk=result.test.pk).update(
            last_run_at=now, last_passed=result.passed, last_message=result.message
        )


def run_for_publish(plan: RoutingPlan, *, using: str = "default") -> list[TestResult]:
    """The plan's active tests against its draft, recorded: what a publish waits for."""
    tests = (
        RouteTest.objects.using(using)
        .filter(plan=plan, is_active=True)
        .select_related("tenant", "customer", "plan")
    )
    results = run(list(tests), pin=pins.draft(plan.pk))
    record(results)
    return results
