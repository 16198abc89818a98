"""The route simulator: "where will this call go, and why?", answered by the real engine.

It calls routing.service.decide() like the HTTP endpoint and the EVAPI bridge do, so
an operator sees exactly what Kamailio would get. The admin's simulator page and the
API's `simulate` both come here, so they follow one rule:

- a simulation is by a source IP, a tenant, a customer or a routing plan (one of
  them; the customer and the plan name their tenant); without any, a tenant's
  operator simulates in their own tenant (a superuser must say which);
- the call's time is the request's `at` (None: now), so an operator can try a call
  at another hour: which scheduled routes and targets are in force then;
- a tenant's operator decides against their own table only: `OwnTenantTable` makes
  every other tenant invisible, so another tenant's source IP gets exactly the
  answer an unknown address gets (403 Forbidden, "in no tenant's networks"), and
  nothing tells the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from routing.metrics import observe_decision
from routing.models import Customer, RoutingPlan
from routing.resolver import CallRequest, Decision, Route, RouteTable
from routing.rows import CustomerRow, PlanRef, RouteEntry, TenantRef, TrunkRow
from routing.schedules import Schedule
from routing.service import decide, get_route_table
from tenants.models import Tenant
from tenants.networks import IPAddress
from tenants.scoping import EVERYTHING, user_scope


class SimulationRefused(ValueError):
    """The simulation cannot be run as asked; the message says what to change."""


BOTH_GIVEN = (
    "Give a source IP or a tenant, not both: with a source IP the tenant comes from its network."
)
NEITHER_GIVEN = "Give a source IP or pick a tenant."
ONE_ONLY = (
    "Simulate by one of a source IP, a tenant, a customer or a routing plan: the customer "
    "and the plan name their tenant."
)


@dataclass(frozen=True)
class Target:
    """Whose call a simulation is: the tenant (None: the source IP decides), and the
    customer or plan named by the operator (None: recognised as for a real call)."""

    tenant: Tenant | None = None
    customer: str | None = None
    plan: str | None = None


def simulation_target(
    *,
    user,
    source_ip: str | None,
    tenant: Tenant | None = None,
    customer: Customer | None = None,
    plan: RoutingPlan | None = None,
) -> Target:
    """The one rule of every simulator: by source IP, tenant, customer or plan, one of
    them; without any, a tenant's operator simulates in their own tenant."""
    given = [x for x in (source_ip, tenant, customer, plan) if x]
    if len(given) > 1:
        raise SimulationRefused(
            BOTH_GIVEN if len(given) == 2 and source_ip and tenant else ONE_ONLY
        )
    if customer is not None:
        return Target(tenant=customer.tenant, customer=customer.name)
    if plan is not None:
        return Target(tenant=plan.tenant, plan=plan.name)
    if source_ip:
        return Target()
    if tenant is not None:
        return Target(tenant=tenant)
    scope = user_scope(user)
    if scope is EVERYTHING or scope is None:
        raise SimulationRefused(NEITHER_GIVEN)
    return Target(tenant=scope)


class OwnTenantTable:
    """A RouteTable that shows one tenant only: every other tenant does not exist."""

    def __init__(self, inner: RouteTable, tenant_id: int) -> None:
        self.inner = inner
        self.tenant_id = tenant_id

    def _own(self, tenant: TenantRef | None) -> TenantRef | None:
        return tenant if tenant is not None and tenant.id == self.tenant_id else None

    def tenant_by_source(self, address: IPAddress) -> tuple[TenantRef, str] | None:
        found = self.inner.tenant_by_source(address)
        if found is None or self._own(found[0]) is None:
            return None
        return found

    def tenant_by_slug(self, slug: str) -> TenantRef | None:
        return self._own(self.inner.tenant_by_slug(slug))

    def _guard(self, tenant_id: int) -> None:
        if tenant_id != self.tenant_id:  # unreachable through resolve(); a guard, not a path
            raise PermissionError("another tenant's route table")

    def customers(
        self, tenant_id: int, *, address: IPAddress | None, callee: str, account: str
    ) -> list[CustomerRow]:
        self._guard(tenant_id)
        return self.inner.customers(tenant_id, address=address, callee=callee, account=account)

    def customer_named(self, tenant_id: int, name: str) -> CustomerRow | None:
        self._guard(tenant_id)
        return self.inner.customer_named(tenant_id, name)

    def plan_named(self, tenant_id: int, name: str) -> PlanRef | None:
        self._guard(tenant_id)
        return self.inner.plan_named(tenant_id, name)

    def trunks(self, tenant_id: int) -> list[TrunkRow]:
        self._guard(tenant_id)
        return self.inner.trunks(tenant_id)

    def routes(self, plan_id: int, candidates: list[str], version: int | None) -> list[RouteEntry]:
        # Plans are reached only through this tenant's customers or plan names above.
        return self.inner.routes(plan_id, candidates, version)

    def schedules(self, tenant_id: int, ids: set[int]) -> dict[int, Schedule]:
        self._guard(tenant_id)
        return self.inner.schedules(tenant_id, ids)


# Which version of a plan's routes a simulation reads: given the plan's id and the
# version calls use (None: not staged), the version to read (None: the saved routes,
# the draft). It may raise SimulationRefused (a version that is not kept).
Pin = Callable[[int, int | None], int | None]
UNAVAILABLE = -1  # a plan's pinned version that the pin refused (no version is negative)


class PinnedTable:
    """A RouteTable that reads plans' routes as of other versions than calls use: the
    draft before a publish, a kept version, the version in force at a past time.

    It pins the version on the plan and customer rows, so the resolver reads the
    routes, and reports in its decision (`plan_version`), the pinned version.
    """

    def __init__(self, inner: RouteTable, pin: Pin) -> None:
        self.inner = inner
        self.pin = pin
        self._pinned: dict[tuple[int, int | None], int | None] = {}
        self._refused: dict[int, SimulationRefused] = {}

    def _version(self, plan_id: int, live: int | None) -> int | None:
        key = (plan_id, live)
        if key not in self._pinned:
            try:
                self._pinned[key] = self.pin(plan_id, live)
            except SimulationRefused as refused:
                # Refused only if the call gets to this plan: another candidate
                # customer's plan may have no such version and not matter.
                self._refused[plan_id] = refused
                self._pinned[key] = UNAVAILABLE
        return self._pinned[key]

    def _customer(self, row: CustomerRow | None) -> CustomerRow | None:
        if row is None:
            return None
        version = self._version(row.plan_id, row.plan_published_version)
        return replace(row, plan_published_version=version)

    def tenant_by_source(self, address: IPAddress) -> tuple[TenantRef, str] | None:
        return self.inner.tenant_by_source(address)

    def tenant_by_slug(self, slug: str) -> TenantRef | None:
        return self.inner.tenant_by_slug(slug)

    def customers(
        self, tenant_id: int, *, address: IPAddress | None, callee: str, account: str
    ) -> list[CustomerRow]:
        found = self.inner.customers(tenant_id, address=address, callee=callee, account=account)
        return [self._customer(row) for row in found]

    def customer_named(self, tenant_id: int, name: str) -> CustomerRow | None:
        return self._customer(self.inner.customer_named(tenant_id, name))

    def plan_named(self, tenant_id: int, name: str) -> PlanRef | None:
        plan = self.inner.plan_named(tenant_id, name)
        if plan is None:
            return None
        return replace(plan, published_version=self._version(plan.id, plan.published_version))

    def trunks(self, tenant_id: int) -> list[TrunkRow]:
        return self.inner.trunks(tenant_id)

    def routes(self, plan_id: int, candidates: list[str], version: int | None) -> list[RouteEntry]:
        if version == UNAVAILABLE:
            raise self._refused[plan_id]
        return self.inner.routes(plan_id, candidates, version)

    def schedules(self, tenant_id: int, ids: set[int]) -> dict[int, Schedule]:
        return self.inner.schedules(tenant_id, ids)


@dataclass
class TargetLine:
    """A route as the operator reads it: position, and why it is there."""

    position: int
    route: Route
    why: str


@dataclass
class Simulation:
    request: CallRequest
    decision: Decision
    seconds: float = 0.0
    lines: list[TargetLine] = field(default_factory=list)

    @property
    def milliseconds(self) -> float:
        return self.seconds * 1000


def simulate(request: CallRequest, *, user, pin: Pin | None = None) -> Simulation:
    """Decide `request` with the live table as `user` may see it, and explain the answer.

    `pin` reads plans' routes as of another version than calls use (versions.pins).
    """
    scope = user_scope(user)
    if scope is None:
        raise PermissionError("this user operates no tenant")
    table = get_route_table()
    if pin is not None:
        table = PinnedTable(table, pin)
    if scope is not EVERYTHING:
        table = OwnTenantTable(table, scope.pk)
    started = time.perf_counter()
    decision = decide(request, table=table)
    seconds = time.perf_counter() - started
    observe_decision("simulator", str(decision.outcome), seconds)
    return Simulation(
        request=request,
        decision=decision,
        seconds=seconds,
        lines=explain_routes(decision, seeded_by_call_id=bool(request.call_id)),
    )


def explain_routes(decision: Decision, *, seeded_by_call_id: bool) -> list[TargetLine]:
    """Why each route is where it is: its priority, and its weight among its peers."""
    lines = []
    for position, route in enumerate(decision.routes, start=1):
        peers = [r for r in decision.routes if r.priority == route.priority]
        if len(peers) == 1:
            why = f"priority {route.priority}: the only target at this priority"
        else:
            total = sum(r.weight for r in peers)
            seed = "this Call-ID" if seeded_by_call_id else "this caller and callee"
            why = (
                f"priority {route.priority}, weight {route.weight} of {total}: first at this "
                f"priority on about {route.weight / total:.0%} of calls; {seed} put it here"
            )
        if decision.routing == "parallel":
            why += " (parallel: rung together with the others)"
        elif position == 1:
            why += " (tried first)"
        lines.append(TargetLine(position=position, route=route, why=why))
    return lines


def sample_number(prefix: str, min_length: int | None, max_length: int | None) -> str:
    """A number that the prefix matches, to prefill the simulator from a prefix's page."""
    length = max(len(prefix), min_length or 0, min(11, max_length or 11))
    return prefix + "0" * (length - len(prefix))
