"""The routing decision: one function that every transport calls.

`resolve()` takes a CallRequest and a RouteTable (where the rows come from) and
returns a Decision (kamailio.rtjson turns it into the document Kamailio's rtjson
module reads). Nothing here touches a socket, a request object or the ORM,
so the HTTP view, the EVAPI bridge, the admin simulator and the CLI give the same
answer for the same call, and the logic is tested without a server.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from routing import schedules as schedule_rules
from routing.ids import new_decision_id
from routing.numbers import clean_number, is_safe_user, match_digits, prefixes_of
from routing.rows import (
    CustomerRow,
    PlanRef,
    RouteEntry,
    RouteRow,
    TargetRow,
    TenantRef,
    TrunkRow,
)
from routing.translation import (
    DiallingContext,
    RuleError,
    TranslationFailed,
    caller_pattern_matches,
    is_number,
    normalise,
    to_carrier,
)
from tenants.networks import IPAddress, NetworkError, network_contains, parse_address


class Outcome(enum.StrEnum):
    ROUTED = "routed"
    LOCATION = "location"
    REJECTED = "rejected"  # a reject route matched
    NO_ROUTE = "no_route"  # nothing matched, or no usable trunk
    FORBIDDEN = "forbidden"  # unknown source, unknown or inactive tenant
    BLOCKED = "blocked"  # a blocklist of the tenant or customer matched (Screen)
    INVALID = "invalid"  # the request itself cannot be routed
    ERROR = "error"  # the engine failed (set by transports, never by resolve())


# --- What the route table provides -------------------------------------------------


class RouteTable(Protocol):
    """Where the resolver reads rows from: the database, or a compiled copy of it.

    Each method is one lookup whose cost must not grow with the size of the table.
    """

    def tenant_by_source(self, address: IPAddress) -> tuple[TenantRef, str] | None:
        """The tenant of the most specific source network containing `address`, and it."""

    def tenant_by_slug(self, slug: str) -> TenantRef | None: ...

    def customers(
        self, tenant_id: int, *, address: IPAddress | None, callee: str, account: str
    ) -> list[CustomerRow]:
        """The tenant's customers that may match the call (a superset: its default
        customer, those with a source network containing `address`, a technical
        prefix that starts `callee`, or this `account`), each with all its sources."""

    def customer_named(self, tenant_id: int, name: str) -> CustomerRow | None: ...

    def plan_named(self, tenant_id: int, name: str) -> PlanRef | None: ...

    def routes(self, plan_id: int, candidates: list[str], version: int | None) -> list[RouteEntry]:
        """The plan's routes whose prefix is one of `candidates` (all of them: a prefix
        has one route per caller prefix and schedule), each with its targets (trunks
        included), in any order: as published in `version`, or as saved when None
        (a plan that is not staged, or a simulation of the draft)."""

    def schedules(self, tenant_id: int, ids: set[int]) -> dict[int, schedule_rules.Schedule]:
        """The tenant's schedules with these ids, parsed (a missing one: never in force)."""

    def trunks(self, tenant_id: int) -> list[TrunkRow]:
        """Every trunk of the tenant (the candidates of a least-cost route over all)."""


class RateQuote(Protocol):
    """A rate that prices a call (rating.lookup.RateMatch is one)."""

    prefix: str
    rate: Decimal  # per minute
    currency: str


class RateSource(Protocol):
    """Where least-cost routing reads rates: vendors' decks and customers' sell rates,
    each the deck in force at the call's time (rating.lookup.rate_source())."""

    def vendor_rate(self, carrier_id: int, digits: str, at: datetime) -> RateQuote | None: ...

    def sell_rate(
        self, plan_id: int | None, customer_id: int | None, digits: str, at: datetime
    ) -> RateQuote | None: ...


class BlockQuote(Protocol):
    """Why a call is blocked (blocklists.lookup.Block is one)."""

    list_name: str
    kind: str  # caller, callee or source
    code: int
    reason: str
    value: str  # the entry that matched
    match: str  # exact, prefix or network


class Screen(Protocol):
    """Blocklists, asked after the customer is recognised and before a route is matched
    (blocklists.lookup.compiled_source()). `caller` and `callee` are digits (None when
    not a number), `address` the call's source (None when unknown)."""

    def blocked(
        self,
        tenant_id: int,
        customer_id: int | None,
        caller: str | None,
        callee: str | None,
        address: IPAddress | None,
    ) -> BlockQuote | None: ...


# --- Input and output --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A call to route, as Kamailio describes it.

    The tenant comes from `tenant` (a slug, for trusted callers such as the bridge's
    default or an operator's simulation) or else from `source_ip`. The customer is
    recognised within the tenant (source, port, technical prefix, `account`), or
    named by a trusted caller (`customer`); `plan` (a trusted caller's, for a
    simulation) routes by that plan without a customer.
    """

    callee: str
    caller: str = ""
    source_ip: str | None = None
    tenant: str | None = None
    source_port: int | None = None
    account: str = ""
    customer: str | None = None
    plan: str | None = None
    at: datetime | None = None  # the call's time (schedules, rates in force); None: now
    call_id: str = ""
    from_name: str = ""
    from_uri: str = ""
    from_tag: str = ""
    to_name: str = ""
    to_uri: str = ""
    to_tag: str = ""
    ruri: str = ""


@dataclass(frozen=True, slots=True)
class RoutingDefaults:
    """Platform defaults applied to trunks that do not set their own."""

    fr_timer: int | None = None
    fr_inv_timer: int | None = None
    health_probe_percent: int = 10  # share of calls a half-open trunk gets (routing.health)


@dataclass(frozen=True, slots=True)
class Route:
    """One next hop, with the rtjson fields and what an operator needs to read it."""

    carrier: str
    trunk: str
    trunk_id: int
    priority: int
    weight: int
    uri: str
    dst_uri: str = ""
    path: str = ""
    socket: str = ""
    from_display: str | None = None
    from_uri: str | None = None
    to_display: str | None = None
    to_uri: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    branch_flags: int | None = None
    fr_timer: int | None = None
    fr_inv_timer: int | None = None
    failover_codes: str = ""  # final codes that move a serial call on; "": the config's
    max_calls: int | None = None  # the trunk's caps, enforced by Kamailio (rtjson route)
    max_cps: int | None = None
    rate: Decimal | None = None  # least-cost routing: the vendor's rate per minute
    currency: str = ""
    rate_prefix: str | None = None  # the rate deck's prefix that priced the number


@dataclass(frozen=True, slots=True)
class CostLine:
    """A candidate of a least-cost route, as the simulator shows it."""

    carrier: str
    trunk: str
    rate_prefix: str | None
    rate: Decimal | None
    currency: str
    limit: Decimal | None  # the highest rate the margin guard allowed
    status: str  # "first", "later" or "skipped"
    why: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a call, and why."""

    outcome: Outcome
    code: int = 200
    reason: str = "OK"
    tenant: TenantRef | None = None
    customer: CustomerRow | None = None
    plan: str = ""
    plan_id: int | None = None
    caller: str = ""
    callee: str = ""
    matched: RouteRow | None = None
    beaten: tuple[RouteRow, ...] = ()
    routing: str | None = None
    routes: tuple[Route, ...] = ()
    skipped: tuple[str, ...] = ()
    costs: tuple[CostLine, ...] = ()
    sell_rate: Decimal | None = None
    currency: str = ""
    trace: tuple[str, ...] = ()
    # The version of the plan's routes the decision used (None: the routes as saved).
    plan_version: int | None = None
    decision_id: str = field(default_factory=new_decision_id)

    @property
    def success(self) -> bool:
        return self.outcome in (Outcome.ROUTED, Outcome.LOCATION)


# --- The decision ------------------------------------------------------------------


def resolve(
    request: CallRequest,
    *,
    table: RouteTable,
    defaults: RoutingDefaults | None = None,
    rates: RateSource | None = None,
    screen: Screen | None = None,
) -> Decision:
    """Decide where `request` goes. Never raises for bad call data: it answers.

    `rates` prices least-cost routes (without it, such routes have no vendor);
    `screen` refuses calls on a blocklist (without it, nothing is blocked).
    """
    defaults = defaults or RoutingDefaults()
    trace: list[str] = []

    def fail(outcome: Outcome, code: int, reason: str, **extra: Any) -> Decision:
        trace.append(f"answer {code} {reason}")
        return Decision(outcome=outcome, code=code, reason=reason, trace=tuple(trace), **extra)

    caller = (request.caller or "").strip()
    if not is_safe_user(caller):
        return fail(Outcome.INVALID, 400, "Invalid caller")
    callee = clean_number(request.callee)
    if not callee:
        return fail(Outcome.INVALID, 400, "No callee")
    if not is_safe_user(callee):
        return fail(Outcome.INVALID, 400, "Invalid callee")

    tenant = _find_tenant(request, table, trace)
    if tenant is None:
        return fail(Outcome.FORBIDDEN, 403, "Forbidden")
    if not tenant.is_active:
        trace.append(f"tenant {tenant.slug} is inactive")
        return fail(Outcome.FORBIDDEN, 403, "Forbidden", tenant=tenant)
    common: dict[str, Any] = {"tenant": tenant, "caller": caller, "callee": callee}

    address = _address(request.source_ip)
    if request.plan:
        plan = table.plan_named(tenant.id, request.plan)
        if plan is None:
            trace.append(f"tenant {tenant.slug} has no routing plan {request.plan!r}")
            return fail(Outcome.INVALID, 400, "Unknown Routing Plan", **common)
        trace.append(f"plan {plan.name} given explicitly")
        plan_id, plan_name, customer_id = plan.id, plan.name, None
        plan_version = plan.published_version
        plan_margins = Margins(plan.margin_percent, plan.margin_absolute, plan.max_cost)
    else:
        customer = _find_customer(request, tenant, address, callee, table, trace)
        if customer is None:
            return fail(Outcome.FORBIDDEN, 403, "Forbidden", **common)
        common["customer"] = customer
        if not customer.is_active:
            trace.append(f"customer {customer.name} is inactive")
            return fail(Outcome.FORBIDDEN, 403, "Forbidden", **common)
        if customer.tech_prefix:
            callee = callee[len(customer.tech_prefix) :]
            trace.append(f"technical prefix {customer.tech_prefix} removed: routing {callee}")
            if not callee:
                return fail(Outcome.INVALID, 400, "No callee", **common)
            common["callee"] = callee
        inbound = translate_inbound(customer, callee=callee, caller=caller, trace=trace)
        if isinstance(inbound, Refusal):
            return fail(Outcome.INVALID, inbound.code, inbound.reason, **common)
        callee, caller = inbound
        common.update(callee=callee, caller=caller)
        plan_id, plan_name, customer_id = customer.plan_id, customer.plan_name, customer.id
        plan_version = customer.plan_published_version
        plan_margins = Margins(
            customer.plan_margin_percent, customer.plan_margin_absolute, customer.plan_max_cost
        )
    common.update(plan=plan_name, plan_id=plan_id, plan_version=plan_version)

    if screen is not None:
        block = screen.blocked(
            tenant.id, customer_id, match_digits(caller), match_digits(callee), address
        )
        if block is not None:
            trace.append(
                f"blocked by {block.kind} list {block.list_name!r} "
                f"(entry {block.value}, {block.match})"
            )
            return fail(Outcome.BLOCKED, block.code, block.reason, **common)

    digits = match_digits(callee)
    if digits is None:
        trace.append(f"{callee!r} is not a number: only the default route can match")
        candidates = [""]
    else:
        candidates = prefixes_of(digits)
    at = request.at or _now()
    if plan_version is not None:
        trace.append(f"routes of plan {plan_name} as published in version {plan_version}")
    entries = table.routes(plan_id, candidates, plan_version)
    rules = _Rules(at, _schedules_of(entries, tenant.id, table))
    fits = _fitting_routes(entries, digits, match_digits(caller), rules, trace)
    if not fits:
        return fail(Outcome.NO_ROUTE, 404, "No Route", **common)

    skipped: list[str] = []
    probe = _Probe(
        key=request.call_id or f"{caller}|{callee}",
        now=(at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp(),  # naive: UTC
        percent=defaults.health_probe_percent,
    )
    pricing = Pricing(rates, plan_id, customer_id, digits, at, plan_margins)
    outbound = OutboundNumbers(callee=callee, caller=caller)
    for position, (route, targets) in enumerate(fits):
        common.update(matched=route, beaten=tuple(row for row, _ in fits[position + 1 :]))
        if route.action == "reject":
            return fail(
                Outcome.REJECTED,
                route.reject_code or 403,
                route.reject_reason or "Rejected",
                **common,
            )
        if route.action == "location":
            trace.append("action location: Kamailio looks the callee up in its location table")
            return Decision(
                outcome=Outcome.LOCATION, routing="location", trace=tuple(trace), **common
            )
        if route.strategy == "lcr_all":
            targets = tuple(
                TargetRow(id=-trunk.id, priority=1, weight=100, trunk=trunk)
                for trunk in table.trunks(tenant.id)
            )
            trace.append(f"least cost over the tenant's {len(targets)} trunks")
        usable = _usable_targets(targets, digits, probe, rules, outbound, skipped, trace)
        quotes: dict[int, RateQuote] = {}
        no_vendor = ""
        if route.strategy != "fixed" and usable:
            usable, quotes, no_vendor = pricing.choose(route, usable, skipped, trace)
            common.update(
                costs=pricing.costs, sell_rate=pricing.sell_rate, currency=pricing.currency
            )
        if usable:
            break
        name = _name(route, rules)
        if route.is_final or position == len(fits) - 1:
            if route.is_final and position < len(fits) - 1:
                trace.append(f"prefix {name} is final: no fallback to the next route")
            if no_vendor:
                code = route.lcr_code or 503
                return fail(Outcome.NO_ROUTE, code, no_vendor, skipped=tuple(skipped), **common)
            return fail(Outcome.NO_ROUTE, 503, "No Active Trunk", skipped=tuple(skipped), **common)
        shorter = fits[position + 1][0]
        trace.append(
            f"prefix {name} has no usable target: falling back to {_name(shorter, rules)} "
            f"({shorter.action})"
        )

    seed = request.call_id or f"{caller}|{callee}"
    if quotes:
        ordered = order_targets(usable, key=seed, cost=lambda t: quotes[t.id].rate)
        pricing.mark_order(ordered)
        common.update(costs=pricing.costs)
    else:
        ordered = order_targets(usable, key=seed)
    routes = tuple(
        _route(target, request, outbound, digits, defaults, quotes.get(target.id))
        for target in ordered
    )
    for target in ordered:  # in route order, so both route tables give the same trace
        trace.extend(outbound.changes(target.trunk))
    trace.append(
        f"{route.routing_mode} to "
        + ", ".join(f"{r.carrier}/{r.trunk} (p{r.priority} w{r.weight})" for r in routes)
    )
    return Decision(
        outcome=Outcome.ROUTED,
        routing=route.routing_mode,
        routes=routes,
        skipped=tuple(skipped),
        trace=tuple(trace),
        **common,
    )


def _name(route: RouteRow, rules: _Rules | None = None) -> str:
    """A route as the trace names it: its prefix, then its rules when it has any
    ('44 caller 3312 (Peak)')."""
    name = route.prefix or "(default)"
    if route.caller_prefix:
        name += f" caller {route.caller_prefix}"
    if route.caller_pattern:
        name += f" caller ~{route.caller_pattern}"
    if route.schedule_id is not None:
        schedule = rules.schedules.get(route.schedule_id) if rules else None
        name += f" ({schedule.name if schedule else f'schedule {route.schedule_id}'})"
    return name


@dataclass(frozen=True, slots=True)
class _Rules:
    """The call's time and the schedules its routes and targets name."""

    at: datetime
    schedules: dict[int, schedule_rules.Schedule]

    def why_off(self, schedule_id: int | None) -> str | None:
        """None when `schedule_id` (None: no schedule) is in force, else why not."""
        if schedule_id is None:
            return None
        schedule = self.schedules.get(schedule_id)
        if schedule is None:
            return f"schedule {schedule_id} is missing or not valid"
        return schedule_rules.why_not(schedule, self.at)


def _schedules_of(
    entries: list[RouteEntry], tenant_id: int, table: RouteTable
) -> dict[int, schedule_rules.Schedule]:
    """The schedules named by these routes and their targets: one lookup, none if unused."""
    ids = {row.schedule_id for row, _ in entries if row.schedule_id is not None}
    ids.update(t.schedule_id for _, targets in entries for t in targets if t.schedule_id)
    return table.schedules(tenant_id, ids) if ids else {}


def precedence(route: RouteRow) -> tuple[int, int, bool, bool, int]:
    """The order in which matching routes answer a call, as one key (highest first):
    the longer callee prefix, then the longer caller prefix, then a caller pattern
    (below any caller prefix, above no caller condition), then a scheduled route
    before an unscheduled one (its fallback); the id only makes the order total."""
    return (
        len(route.prefix),
        len(route.caller_prefix),
        bool(route.caller_pattern),
        route.schedule_id is not None,
        -route.id,
    )


@dataclass(frozen=True, slots=True)
class _Probe:
    """Whether this call probes a half-open trunk: a hash of the call and the trunk, so
    a retransmission, the other transport and every process pick the same calls."""

    key: str
    now: float
    percent: int

    def picks(self, trunk_id: int) -> bool:
        digest = hashlib.blake2b(f"{self.key}|{trunk_id}".encode(), digest_size=4).digest()
        return int.from_bytes(digest) % 100 < self.percent


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def health_status(override: str, state: str, until: float | None, now: float) -> str:
    """How routing treats a trunk at `now` (Unix seconds): healthy, unhealthy, half_open
    (its cool-down is over: it gets a share of calls), forced_up or forced_down. The one
    rule; routing.health.status() applies it to a TrunkHealth row for the pages."""
    if override == "up":
        return "forced_up"
    if override == "down":
        return "forced_down"
    if state != "unhealthy":
        return "healthy"
    return "unhealthy" if until is None or now < until else "half_open"


def _unhealthy(trunk: TrunkRow, probe: _Probe, trace: list[str]) -> str | None:
    """Why the trunk's health keeps this call off it, or None (routing.health)."""
    status = health_status(trunk.health_override, trunk.health_state, trunk.health_until, probe.now)
    if status in ("healthy", "forced_up"):
        return None
    if status == "forced_down":
        return "taken out of service by an operator"
    until = trunk.health_until
    if status == "unhealthy":
        since = f" since {_clock(trunk.health_since)} UTC" if trunk.health_since else ""
        reason = f" ({trunk.health_reason})" if trunk.health_reason else ""
        end = f", cool-down until {_clock(until)}" if until is not None else ""
        return f"unhealthy{since}{reason}{end}"
    if probe.picks(trunk.id):
        trace.append(f"{trunk.label} is half-open: this call probes it")
        return None
    return f"half-open: probing with {probe.percent}% of calls"


def _usable_targets(
    targets: tuple[TargetRow, ...],
    digits: str | None,
    probe: _Probe,
    rules: _Rules,
    outbound: OutboundNumbers,
    skipped: list[str],
    trace: list[str],
) -> list[TargetRow]:
    """The targets a call can be sent to; the others are added to `skipped` with why."""
    usable = []
    for target in targets:
        trunk = target.trunk
        if (off := rules.why_off(target.schedule_id)) is not None:
            why = f"schedule {_schedule_name(rules, target.schedule_id)}: {off}"
        elif not trunk.carrier_active:
            why = f"carrier {trunk.carrier_name} is inactive"
        elif not trunk.is_active:
            why = "trunk is inactive"
        elif (unhealthy := _unhealthy(trunk, probe, trace)) is not None:
            why = unhealthy
        elif (untranslatable := outbound.failure(trunk)) is not None:
            why = untranslatable
        elif (
            trunk.strip_digits
            and digits is not None
            and trunk.strip_digits >= (sent := len(outbound.of(trunk)[0].lstrip("+")))
        ):
            why = f"strips {trunk.strip_digits} digits and the number has only {sent}"
        else:
            usable.append(target)
            continue
        skipped.append(f"{trunk.label}: {why}")
        trace.append(f"skipped {trunk.label}: {why}")
    return usable


def _find_tenant(request: CallRequest, table: RouteTable, trace: list[str]) -> TenantRef | None:
    if request.tenant:
        tenant = table.tenant_by_slug(request.tenant)
        trace.append(
            f"tenant {request.tenant} given explicitly"
            if tenant
            else f"no tenant with slug {request.tenant!r}"
        )
        return tenant
    if not request.source_ip:
        trace.append("no source IP and no tenant: cannot tell whose call this is")
        return None
    try:
        address = parse_address(request.source_ip)
    except NetworkError:
        trace.append(f"source {request.source_ip!r} is not an IP address")
        return None
    found = table.tenant_by_source(address)
    if found is None:
        trace.append(f"source {address} is in no tenant's networks")
        return None
    tenant, network = found
    trace.append(f"source {address} is in {network}: tenant {tenant.slug}")
    return tenant


# --- Least cost ----------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Margins:
    """The margin guard: a plan's, with a route's own values taking precedence."""

    percent: Decimal | None = None
    absolute: Decimal | None = None
    max_cost: Decimal | None = None

    def over(self, route: RouteRow) -> Margins:
        return Margins(
            route.margin_percent if route.margin_percent is not None else self.percent,
            route.margin_absolute if route.margin_absolute is not None else self.absolute,
            route.max_cost if route.max_cost is not None else self.max_cost,
        )

    def limit(self, sell: RateQuote | None) -> tuple[Decimal | None, str]:
        """The highest vendor rate the guard allows, and how it was reached."""
        limits: list[tuple[Decimal, str]] = []
        if self.max_cost is not None:
            limits.append((self.max_cost, f"max cost {self.max_cost}"))
        if sell is not None and self.percent is not None:
            allowed = (sell.rate * (1 - self.percent / 100)).quantize(sell.rate)
            limits.append((allowed, f"sell rate {sell.rate} less {self.percent}%"))
        if sell is not None and self.absolute is not None:
            limits.append(
                (sell.rate - self.absolute, f"sell rate {sell.rate} less {self.absolute}")
            )
        return min(limits, key=lambda pair: pair[0]) if limits else (None, "")


class Pricing:
    """Least-cost routing for one call: the sell rate, the vendors' rates, the guard.

    A candidate is priced by its carrier's rate for the number in the deck in force at
    the call's time; one without a rate, in another currency than the sell rate, or
    above the margin guard's limit is skipped with the reason. The rest are ordered
    cheapest first (ties: priority, then weight shares).
    """

    def __init__(
        self,
        rates: RateSource | None,
        plan_id: int,
        customer_id: int | None,
        digits: str | None,
        at: datetime,
        margins: Margins,
    ) -> None:
        self.rates, self.plan_id, self.customer_id = rates, plan_id, customer_id
        self.digits, self.at, self.margins = digits, at, margins
        self.costs: tuple[CostLine, ...] = ()
        self.sell_rate: Decimal | None = None
        self.currency = ""
        self._sell: RateQuote | None = None
        self._sell_read = False

    def sell(self) -> RateQuote | None:
        if not self._sell_read:
            self._sell_read = True
            self._sell = self.rates.sell_rate(self.plan_id, self.customer_id, self.digits, self.at)
            if self._sell is not None:
                self.sell_rate, self.currency = self._sell.rate, self._sell.currency
        return self._sell

    def choose(
        self, route: RouteRow, usable: list[TargetRow], skipped: list[str], trace: list[str]
    ) -> tuple[list[TargetRow], dict[int, RateQuote], str]:
        """The priced candidates, their quotes by target id, and the answer when none is."""
        if self.rates is None or self.digits is None:
            why = "no rate source" if self.rates is None else "the callee is not a number"
            for target in usable:
                skipped.append(f"{target.trunk.label}: not priced ({why})")
            trace.append(f"least cost: {why}, so no vendor can be priced")
            return [], {}, "No Vendor Rate"
        margins = self.margins.over(route)
        sell = self.sell()
        limit, basis = margins.limit(sell)
        if sell is None:
            trace.append(
                f"least cost for {self.digits}: no sell rate"
                + (", only the max cost applies" if margins.max_cost is not None else "")
            )
        else:
            trace.append(
                f"least cost for {self.digits}: sell rate {sell.rate} {sell.currency} "
                f"(prefix {sell.prefix or '(default)'})"
                + (f", vendors up to {limit} ({basis})" if limit is not None else "")
            )
        by_carrier: dict[int, RateQuote | None] = {}
        priced, quotes, lines = [], {}, []
        any_rate = False
        for target in usable:
            trunk = target.trunk
            if trunk.carrier_id not in by_carrier:
                by_carrier[trunk.carrier_id] = self.rates.vendor_rate(
                    trunk.carrier_id, self.digits, self.at
                )
            quote = by_carrier[trunk.carrier_id]
            why = ""
            if quote is None:
                why = f"carrier {trunk.carrier_name} has no rate for {self.digits}"
            else:
                any_rate = True
                if sell is not None and quote.currency != sell.currency:
                    why = (
                        f"rate in {quote.currency}, the sell rate in {sell.currency}: "
                        "not comparable"
                    )
                elif limit is not None and quote.rate > limit:
                    why = f"rate {quote.rate} {quote.currency} is above {limit} ({basis})"
            lines.append(
                CostLine(
                    carrier=trunk.carrier_name,
                    trunk=trunk.name,
                    rate_prefix=quote.prefix if quote else None,
                    rate=quote.rate if quote else None,
                    currency=quote.currency if quote else "",
                    limit=limit,
                    status="skipped" if why else "",
                    why=why,
                )
            )
            if why:
                skipped.append(f"{trunk.label}: {why}")
                trace.append(f"skipped {trunk.label}: {why}")
            else:
                priced.append(target)
                quotes[target.id] = quote
        self.costs = tuple(lines)
        if priced:
            return priced, quotes, ""
        return [], {}, "No Vendor Within Margin" if any_rate else "No Vendor Rate"

    def mark_order(self, ordered: list[TargetRow]) -> None:
        """Say, per priced candidate, where the cost put it."""
        place = {(t.trunk.carrier_name, t.trunk.name): n for n, t in enumerate(ordered)}
        lines = []
        for line in self.costs:
            n = place.get((line.carrier, line.trunk))
            if n is None:
                lines.append(line)
                continue
            prefix = line.rate_prefix or "(default)"
            why = f"{line.rate} {line.currency} per minute (rate prefix {prefix})"
            lines.append(
                dataclasses.replace(
                    line,
                    status="first" if n == 0 else "later",
                    why=("cheapest: " if n == 0 else f"#{n + 1}: ") + why,
                )
            )
        self.costs = tuple(sorted(lines, key=lambda c: (c.status == "skipped", c.rate or 0)))


def _address(source_ip: str | None) -> IPAddress | None:
    if not source_ip:
        return None
    try:
        return parse_address(source_ip)
    except NetworkError:
        return None


def _find_customer(
    request: CallRequest,
    tenant: TenantRef,
    address: IPAddress | None,
    callee: str,
    table: RouteTable,
    trace: list[str],
) -> CustomerRow | None:
    if request.customer:
        named = table.customer_named(tenant.id, request.customer)
        trace.append(
            f"customer {request.customer} given explicitly: plan {named.plan_name}"
            if named
            else f"tenant {tenant.slug} has no customer {request.customer!r}"
        )
        return named
    candidates = table.customers(tenant.id, address=address, callee=callee, account=request.account)
    customer, why = recognise_customer(
        candidates,
        address=address,
        port=request.source_port,
        callee=callee,
        account=request.account,
    )
    if customer is None:
        trace.append(f"no customer of tenant {tenant.slug} matches this call")
    else:
        trace.append(f"customer {customer.name} ({why}): plan {customer.plan_name}")
    return customer


Specificity = tuple[int, int, int, int]


def recognise_customer(
    candidates: list[CustomerRow],
    *,
    address: IPAddress | None,
    port: int | None,
    callee: str,
    account: str,
) -> tuple[CustomerRow | None, str]:
    """The customer whose rules all match the call, the most specific one, and why.

    A customer's rules are its account, its technical prefix and its source
    networks (each with an optional port); all it has must match. Among those
    that match, the most specific wins, compared in this order: an account match,
    then the longer technical prefix, then the longer network prefix, then a port
    match. The tenant's default customer (no rules) comes last. Two customers that
    could tie are refused when saved (routing.services), so there is one winner.
    """
    best: CustomerRow | None = None
    best_score: Specificity | None = None
    best_why = ""
    for customer in candidates:
        found = _specificity(customer, address, port, callee, account)
        if found is None:
            continue
        score, why = found
        if best_score is None or score > best_score:
            best, best_score, best_why = customer, score, why
    return best, best_why


def _specificity(
    customer: CustomerRow,
    address: IPAddress | None,
    port: int | None,
    callee: str,
    account: str,
) -> tuple[Specificity, str] | None:
    if customer.is_default:
        return (-1, -1, -1, -1), "the tenant's default customer"
    if not (customer.account or customer.tech_prefix or customer.sources):
        return None  # a customer without rules matches nothing (services refuse it)
    why = []
    if customer.account:
        if customer.account != account:
            return None
        why.append(f"account {account}")
    if customer.tech_prefix:
        if not callee.startswith(customer.tech_prefix):
            return None
        why.append(f"technical prefix {customer.tech_prefix}")
    length = port_match = -1
    if customer.sources:
        if address is None:
            return None
        for network, source_port in customer.sources:
            if source_port is not None and source_port != port:
                continue
            prefix_length = network_contains(network, address)
            if prefix_length is not None and (prefix_length, source_port is not None) > (
                length,
                port_match == 1,
            ):
                length, port_match = prefix_length, int(source_port is not None)
                where = f"source {network}" + (f" port {source_port}" if source_port else "")
        if length < 0:
            return None
        why.append(where)
    return (int(bool(customer.account)), len(customer.tech_prefix), length, port_match), ", ".join(
        why
    )


def _schedule_name(rules: _Rules, schedule_id: int | None) -> str:
    schedule = rules.schedules.get(schedule_id) if schedule_id is not None else None
    return schedule.name if schedule else str(schedule_id)


# --- Number translation (routing.translation) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call a pipeline stage refuses: the SIP code and reason Kamailio replies."""

    code: int
    reason: str


def _inbound_context(customer: CustomerRow) -> DiallingContext | None:
    """The customer's dialling context, or None when it does not translate its numbers."""
    if not (
        customer.country_code
        or customer.international_prefix
        or customer.inbound_callee_rules.strip()
        or customer.inbound_caller_rules.strip()
    ):
        return None
    return DiallingContext(
        country_code=customer.country_code,
        national_prefix=customer.national_prefix,
        international_prefix=customer.international_prefix,
    )


def translate_inbound(
    customer: CustomerRow, *, callee: str, caller: str, trace: list[str]
) -> tuple[str, str] | Refusal:
    """The callee and caller as E.164 digits by the customer's dialling context and rules,
    before the route is matched; or why the call is refused.

    A number that is not digits (a SIP user name, 'anonymous') is left as it is; a
    translation that gives no usable number refuses the call: 484 for the callee, 403
    for the caller.
    """
    context = _inbound_context(customer)
    if context is None:
        return callee, caller
    numbers = []
    for what, number, rules, refusal in (
        ("callee", callee, customer.inbound_callee_rules, Refusal(484, "Address Incomplete")),
        ("caller", caller, customer.inbound_caller_rules, Refusal(403, "Invalid Caller Number")),
    ):
        if not is_number(number):
            if number:
                trace.append(f"{what} {number!r} is not a number: not normalised")
            numbers.append(number)
            continue
        try:
            translated = normalise(number, context=context, rules=rules, what=what)
        except (TranslationFailed, RuleError) as exc:
            trace.append(f"{what} cannot be normalised for customer {customer.name}: {exc}")
            return refusal
        trace.append(translated.describe(what))
        numbers.append(translated.number)
    return numbers[0], numbers[1]


class OutboundNumbers:
    """The callee and caller of one call in each trunk's carrier's format.

    Translated once per set of translation settings (a carrier's trunks usually share
    them, and a trunk may be a target of several fallback routes); a trunk whose
    translation fails is skipped with the reason (`failure`).
    """

    def __init__(self, *, callee: str, caller: str) -> None:
        self.callee, self.caller = callee, caller
        self._by_trunk: dict[int, tuple[str, str] | str] = {}
        self._by_settings: dict[tuple[str, ...], tuple[tuple[str, str] | str, list[str]]] = {}
        self._changes: dict[int, list[str]] = {}

    def failure(self, trunk: TrunkRow) -> str | None:
        """Why the call's numbers cannot be sent to this trunk, or None."""
        found = self._translate(trunk)
        return found if isinstance(found, str) else None

    def of(self, trunk: TrunkRow) -> tuple[str, str]:
        """The callee and caller to send to this trunk (after `failure` said None)."""
        found = self._translate(trunk)
        if isinstance(found, str):
            raise TranslationFailed(found)
        return found

    def _translate(self, trunk: TrunkRow) -> tuple[str, str] | str:
        found = self._by_trunk.get(trunk.id)
        if found is not None:
            return found
        settings = (
            trunk.number_format,
            trunk.country_code,
            trunk.national_prefix,
            trunk.international_prefix,
            trunk.outbound_callee_rules,
            trunk.outbound_caller_rules,
        )
        if not (settings[0] or settings[4].strip() or settings[5].strip()):
            found = self._by_trunk[trunk.id] = (self.callee, self.caller)
            return found
        if settings not in self._by_settings:
            self._by_settings[settings] = self._to_carrier(trunk)
        found, self._changes[trunk.id] = self._by_settings[settings]
        self._by_trunk[trunk.id] = found
        return found

    def changes(self, trunk: TrunkRow) -> list[str]:
        """What the trunk's translation changed, for the trace of the routes it is in."""
        return [f"for {trunk.label}: {change}" for change in self._changes.get(trunk.id, ())]

    def _to_carrier(self, trunk: TrunkRow) -> tuple[tuple[str, str] | str, list[str]]:
        """The numbers for a trunk's settings (or why not), and what changed, for the trace."""
        context = DiallingContext(
            country_code=trunk.country_code,
            national_prefix=trunk.national_prefix,
            international_prefix=trunk.international_prefix,
        )
        numbers: list[str] = []
        changes: list[str] = []
        for what, number, rules in (
            ("callee", self.callee, trunk.outbound_callee_rules),
            ("caller", self.caller, trunk.outbound_caller_rules),
        ):
            if not is_number(number):
                numbers.append(number)  # a SIP user name or 'anonymous': as it is
                continue
            try:
                translated = to_carrier(
                    number,
                    number_format=trunk.number_format,
                    context=context,
                    rules=rules,
                    what=what,
                )
            except ValueError as exc:  # TranslationFailed, RuleError, a bad stored format
                return f"{what} cannot be translated: {exc}", []
            if translated.changed:
                changes.append(translated.describe(what))
            numbers.append(translated.number)
        return (numbers[0], numbers[1]), changes


def _fitting_routes(
    entries: list[RouteEntry],
    digits: str | None,
    caller: str | None,
    rules: _Rules,
    trace: list[str],
) -> list[RouteEntry]:
    """The active routes whose length bounds fit the number, whose caller condition
    matches the caller's digits and whose schedule is in force, in `precedence` order.

    The first one answers; the next ones are where a call falls back to when the
    first has no usable target (unless it is final).
    """
    length = len(digits) if digits is not None else None
    fits: list[RouteEntry] = []
    for entry in sorted(entries, key=lambda e: precedence(e[0]), reverse=True):
        row, name = entry[0], _name(entry[0], rules)
        if row.caller_prefix and (caller is None or not caller.startswith(row.caller_prefix)):
            shown = caller if caller is not None else "(not a number)"
            trace.append(f"route {name}: caller {shown} does not start with {row.caller_prefix}")
        elif row.caller_pattern and not caller_pattern_matches(row.caller_pattern, caller):
            shown = caller if caller is not None else "(not a number)"
            trace.append(f"route {name}: caller {shown} does not match {row.caller_pattern}")
        elif (off := rules.why_off(row.schedule_id)) is not None:
            trace.append(f"route {name}: {off}")
        elif not row.is_active:
            trace.append(f"prefix {name} is inactive")
        elif length is not None and row.min_length is not None and length < row.min_length:
            trace.append(f"prefix {name} needs at least {row.min_length} digits, got {length}")
        elif length is not None and row.max_length is not None and length > row.max_length:
            trace.append(f"prefix {name} allows at most {row.max_length} digits, got {length}")
        else:
            fits.append(entry)
    if not fits:
        trace.append("no active prefix matches")
        return fits
    matched, beaten = fits[0][0], [row for row, _ in fits[1:]]
    trace.append(
        f"matched prefix {_name(matched, rules)} ({matched.action})"
        + (f", before {', '.join(_name(r, rules) for r in beaten)}" if beaten else "")
    )
    return fits


def order_targets(
    targets: list[TargetRow], *, key: str, cost: Callable[[TargetRow], Decimal] | None = None
) -> list[TargetRow]:
    """Cheapest first when `cost` is given (least cost); then lower priority first;
    within a priority, a weighted random order seeded by `key`.

    Weights are shares of traffic: with 70/30 the first target leads about 70% of
    calls. The order is a function of the call (its Call-ID), so the same call
    gets the same answer over HTTP and EVAPI, and a retry is not sent elsewhere.
    (Efraimidis–Spirakis: sort by u^(1/w), here by its logarithm.)
    """

    def score(target: TargetRow) -> float:
        digest = hashlib.blake2b(f"{key}|{target.id}".encode(), digest_size=8).digest()
        uniform = (int.from_bytes(digest, "big") + 1) / 2.0**64  # in (0, 1]
        return math.log(uniform) / max(target.weight, 1)

    if cost is None:
        return sorted(targets, key=lambda t: (t.priority, -score(t), t.id))
    return sorted(targets, key=lambda t: (cost(t), t.priority, -score(t), t.id))


def _render(template: str, caller: str, callee: str) -> str:
    return template.replace("{caller}", caller).replace("{callee}", callee)


def _route(
    target: TargetRow,
    request: CallRequest,
    outbound: OutboundNumbers,
    digits: str | None,
    defaults: RoutingDefaults,
    quote: RateQuote | None = None,
) -> Route:
    trunk = target.trunk
    # The carrier's format and the trunk's rules first (routing.translation), then the
    # digits it strips and its technical prefix.
    callee, caller = outbound.of(trunk)
    if digits is not None and (trunk.strip_digits or trunk.tech_prefix):
        user = trunk.tech_prefix + callee.lstrip("+")[trunk.strip_digits :]
    else:
        user = callee  # as dialled: a leading '+' is the caller's, not ours to drop
    hostport, params, header_pairs = _template(trunk)
    uri = f"sip:{user}@{hostport}{params}"

    from_display = from_uri = to_display = to_uri = None
    if trunk.from_display or trunk.from_uri:
        from_display = (
            _render(trunk.from_display, caller, user) if trunk.from_display else request.from_name
        )
        from_uri = _render(trunk.from_uri, caller, user) if trunk.from_uri else request.from_uri
    elif caller != outbound.caller and request.from_uri:
        # The trunk translated the caller: the From user follows (display kept).
        from_display, from_uri = request.from_name, _with_user(request.from_uri, caller)
    if trunk.rewrite_to:
        to_display = request.to_name
        to_uri = f"sip:{user}@{hostport}"
    extra = tuple((name, _render(value, caller, user)) for name, value in header_pairs)
    return Route(
        carrier=trunk.carrier_name,
        trunk=trunk.name,
        trunk_id=trunk.id,
        priority=target.priority,
        weight=target.weight,
        uri=uri,
        dst_uri=trunk.outbound_proxy,
        path=trunk.path,
        socket=trunk.socket,
        from_display=from_display,
        from_uri=from_uri or None,
        to_display=to_display,
        to_uri=to_uri,
        extra_headers=extra,
        branch_flags=trunk.branch_flags,
        fr_timer=trunk.fr_timer or defaults.fr_timer,
        fr_inv_timer=trunk.fr_inv_timer or defaults.fr_inv_timer,
        failover_codes=trunk.failover_codes,
        max_calls=trunk.max_calls,
        max_cps=trunk.max_cps,
        rate=quote.rate if quote else None,
        currency=quote.currency if quote else "",
        rate_prefix=quote.prefix if quote else None,
    )


def _template(trunk: TrunkRow) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """What a trunk's routes share whatever the number (host and port, URI parameters,
    its extra headers parsed), made once per trunk row: rows are immutable, and a
    changed trunk is a new row."""
    known = _TEMPLATES.get(id(trunk))
    if known is not None and known[0] is trunk:
        return known[1]
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    hostport = f"{host}:{trunk.port}" if trunk.port else host
    params = f";transport={trunk.transport}" if trunk.transport in ("tcp", "tls") else ""
    template = (hostport, params, tuple(_header_pairs(trunk.extra_headers)))
    if len(_TEMPLATES) >= 4096:
        _TEMPLATES.clear()
    _TEMPLATES[id(trunk)] = (trunk, template)
    return template


# id(trunk row) -> (the row, its template): the row is kept, so its id is not reused.
_TEMPLATES: dict[int, tuple[TrunkRow, tuple[str, str, tuple[tuple[str, str], ...]]]] = {}


def _with_user(uri: str, user: str) -> str:
    """`uri` (a bare sip:, sips: or tel: URI) with its user part replaced by `user`."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips", "tel"):
        return uri
    if scheme.lower() == "tel":
        _number, semicolon, params = rest.partition(";")
        return f"{scheme}:{user}{semicolon}{params}"
    _old, at, host = rest.rpartition("@")
    return f"{scheme}:{user}@{host}" if at else f"{scheme}:{user}@{rest}"


def _header_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            pairs.append((name.strip(), value.strip()))
    return pairs
