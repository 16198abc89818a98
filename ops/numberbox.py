"""The number box: "which route does this number hit?", from any admin page.

An operator types a number as people write it (+44 20 7123 4567, 0044 20..., 442071234567);
the answer is the chain of prefixes of the live table that match it (44 → 4420), the
route the engine takes for a call of the customer, its targets in order with their
state now, and a link to the full simulation.

Everything comes from the routing code itself, so the box cannot disagree with a call:

- the number is read as the customer dials (routing.resolver.translate_inbound, its
  dialling context and rules); a customer without a dialling context routes digits as
  dialled, so the box reads a leading "00" as the international prefix
  (routing.translation.DiallingContext) and hands the simulation the "+" form;
- the chain is the route table's `routes(plan, prefixes_of(digits), version)`, the very
  query of a call, at the plan's published version (what calls use, not the draft): a
  fixed number of indexed queries whatever the size of the table;
- which route answers, and the outcome, is the engine's decision (routing.service.decide
  on the same table), for a caller without caller rules, now.

Scoping: the tenant is the operator's own, the customer one of that tenant's
(tenants.scoping), and the table is seen through OwnTenantTable. A superuser who names
no tenant gets one line per tenant (lookup_every_tenant), up to EVERY_TENANT_LIMIT.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django import forms
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from ops import route_order
from ops.simulator import simulator_url
from routing.models import Customer, Schedule
from routing.numbers import clean_number, match_digits, prefixes_of
from routing.resolver import CallRequest, Decision, precedence, translate_inbound
from routing.rows import RouteRow
from routing.service import decide, get_route_table
from routing.simulation import OwnTenantTable
from routing.translation import DiallingContext
from tenants.models import Tenant
from tenants.scoping import EVERYTHING, scope_queryset, user_scope

MAX_NUMBER = 64
# A superuser's look-up in every tenant is one look-up per tenant (a few indexed
# queries each): bounded, so the page stays fast; above it, a tenant must be picked.
EVERY_TENANT_LIMIT = 25
# How a number is read for a customer that routes digits as dialled: "+" and "00"
# (ITU-T E.164's international prefix) both mean international.
AS_DIALLED = DiallingContext(international_prefix="00")
NOT_A_NUMBER = (
    "{text!r} is not a phone number: type digits, with an optional leading + or 00 "
    "and any spaces, dashes, dots or parentheses."
)


class NumberBoxError(ValueError):
    """The lookup cannot be made as asked; the message says what to change."""


@dataclass
class RouteLine:
    """One route of the chain, as the page shows it."""

    route: RouteRow
    rules: str
    steps: list[route_order.Step]
    chosen: bool = False
    change_url: str = ""

    @property
    def order_html(self) -> SafeString:
        return route_order.render(self.steps, self.route.routing_mode)

    @property
    def order_text(self) -> str:
        return route_order.describe(self.steps, self.route.routing_mode)

    @property
    def lanes(self) -> list[route_order.Lane]:
        return route_order.lanes(self.steps, self.route.routing_mode)


@dataclass
class ChainLink:
    prefix: str
    routes: list[RouteLine]

    @property
    def label(self) -> str:
        return self.prefix or "(default)"


@dataclass
class NumberLookup:
    number: str
    digits: str
    how: str
    tenant: Tenant
    customer: Customer
    plan: str
    version: int | None
    chain: list[ChainLink] = field(default_factory=list)
    decision: Decision | None = None
    simulate_url: str = ""

    @property
    def chosen(self) -> RouteLine | None:
        return next((r for link in self.chain for r in link.routes if r.chosen), None)

    @property
    def chain_text(self) -> str:
        return " → ".join(link.label for link in self.chain)


class NumberBoxForm(forms.Form):
    """The box's query string: the number, and (optional) whose call it is."""

    n = forms.CharField(
        label="Number",
        max_length=MAX_NUMBER,
        help_text="As people write it: +44 20 7123 4567, 0044 20 7123 4567, 442071234567.",
    )
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        to_field_name="slug",
        required=False,
        empty_label="(my tenant; every tenant for a superuser)",
        help_text="Whose route table: yours, or for a superuser the tenant to look in.",
    )
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.none(),
        required=False,
        empty_label="(the default customer)",
        help_text="Read and route the number as this customer's call (its plan, its "
        "dialling context).",
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        scope = user_scope(user)
        tenants = Tenant.objects.order_by("name")
        if scope is not EVERYTHING:
            tenants = tenants.filter(pk=getattr(scope, "pk", None))
        self.fields["tenant"].queryset = tenants
        customers = scope_queryset(Customer.objects.select_related("tenant"), user)
        self.fields["customer"].queryset = customers.order_by("tenant__name", "name")
        self.fields["customer"].label_from_instance = lambda c: f"{c.tenant} / {c.name}"

    def clean_n(self) -> str:
        text = self.cleaned_data["n"]
        if match_digits(text) is None:
            raise forms.ValidationError(NOT_A_NUMBER.format(text=text.strip()))
        return text

    def wants_every_tenant(self) -> bool:
        """A superuser who named neither a tenant nor a customer."""
        data = self.cleaned_data
        return (
            data.get("tenant") is None
            and data.get("customer") is None
            and user_scope(self.user) is EVERYTHING
        )

    def lookup(self) -> NumberLookup:
        data = self.cleaned_data
        return lookup(
            user=self.user,
            number=data["n"],
            tenant=data.get("tenant"),
            customer=data.get("customer"),
        )


def whose_call(
    *, user, tenant: Tenant | None, customer: Customer | None
) -> tuple[Tenant, Customer]:
    """The tenant and customer of a lookup: the customer's, else the operator's tenant
    (a superuser names one) and its default customer."""
    scope = user_scope(user)
    if scope is None:
        raise NumberBoxError("This account operates no tenant.")
    if customer is not None:
        if tenant is not None and customer.tenant_id != tenant.pk:
            raise NumberBoxError(f"Customer {customer.name} is not a customer of {tenant}.")
        return customer.tenant, customer
    if tenant is None:
        if scope is EVERYTHING:
            raise NumberBoxError("Pick the tenant whose route table to look in.")
        tenant = scope
    default = Customer.objects.filter(tenant=tenant, is_default=True).first()
    if default is None:
        raise NumberBoxError(
            f"{tenant} has no default customer: pick the customer whose call this is."
        )
    return tenant, default


def lookup(
    *, user, number: str, tenant: Tenant | None = None, customer: Customer | None = None
) -> NumberLookup:
    """The chain, route and targets `number` gets in the live table, as `user` may see it.

    `tenant` and `customer` must come from the user's scope (NumberBoxForm's choices);
    raises NumberBoxError when the number or the context cannot be used.
    """
    tenant, customer = whose_call(user=user, tenant=tenant, customer=customer)
    cleaned = clean_number(number)
    if match_digits(cleaned) is None:
        raise NumberBoxError(NOT_A_NUMBER.format(text=number.strip()))
    table = OwnTenantTable(get_route_table(), tenant.pk)
    row = table.customer_named(tenant.pk, customer.name)
    if row is None:  # deleted between the form and here
        raise NumberBoxError(f"{tenant} has no customer {customer.name}.")

    trace: list[str] = []
    read = translate_inbound(row, callee=cleaned, caller="", trace=trace)
    if not isinstance(read, tuple):
        raise NumberBoxError(
            f"Customer {row.name}'s number translation refuses {number.strip()!r} "
            f"({read.code} {read.reason}): {trace[-1] if trace else ''}"
        )
    if trace:  # the customer's own dialling context read it
        digits, how, callee = read[0], trace[0], cleaned
    else:  # digits as dialled; "+" and "00" are international
        digits, how = AS_DIALLED.to_e164(cleaned)
        callee = cleaned if cleaned.startswith("+") else f"+{digits}"
    digits = match_digits(digits) or ""

    entries = table.routes(row.plan_id, prefixes_of(digits), row.plan_published_version)
    schedule_ids = {r.schedule_id for r, _ in entries if r.schedule_id} | {
        t.schedule_id for _, targets in entries for t in targets if t.schedule_id
    }
    names = (
        dict(Schedule.objects.filter(tenant=tenant, id__in=schedule_ids).values_list("id", "name"))
        if schedule_ids
        else {}
    )
    # The engine itself, on the same tenant-only table (not simulate(): a look-up is not
    # a simulation, and must not count in the simulator's metrics).
    decision = decide(
        CallRequest(callee=callee, caller="", tenant=tenant.slug, customer=customer.name),
        table=table,
    )
    matched = decision.matched.id if decision.matched is not None else None

    now = timezone.now()
    by_prefix: dict[str, list[RouteLine]] = defaultdict(list)
    for route, targets in sorted(entries, key=lambda e: precedence(e[0]), reverse=True):
        by_prefix[route.prefix].append(
            RouteLine(
                route=route,
                rules=_rules(route, names),
                steps=[route_order.step_of_row(t, now, names) for t in targets],
                chosen=route.id == matched,
                change_url=reverse("admin:routing_dialprefix_change", args=[route.id]),
            )
        )
    return NumberLookup(
        number=number.strip(),
        digits=digits,
        how=how,
        tenant=tenant,
        customer=customer,
        plan=row.plan_name,
        version=row.plan_published_version,
        chain=[ChainLink(p, by_prefix[p]) for p in sorted(by_prefix, key=len)],
        decision=decision,
        simulate_url=simulator_url(customer=str(customer.pk), callee=callee),
    )


@dataclass
class TenantLine:
    """One tenant's line of a superuser's look-up: its look-up, or why there is none
    (its default customer's number translation refuses the number, for instance)."""

    tenant: Tenant
    found: NumberLookup | None = None
    problem: str = ""


def lookup_every_tenant(*, user, number: str) -> list[TenantLine]:
    """A superuser's look-up of `number` in every tenant, by its default customer, in
    the order of their names; tenants without a default customer are left out."""
    if user_scope(user) is not EVERYTHING:
        raise NumberBoxError("Only a superuser looks in every tenant.")
    tenants = list(
        Tenant.objects.filter(customers__is_default=True)
        .order_by("name")
        .distinct()[: EVERY_TENANT_LIMIT + 1]
    )
    if len(tenants) > EVERY_TENANT_LIMIT:
        raise NumberBoxError(
            f"There are more than {EVERY_TENANT_LIMIT} tenants: pick the one to look in."
        )
    if not tenants:
        raise NumberBoxError("No tenant has a default customer: pick a customer.")
    lines = []
    for tenant in tenants:
        try:
            lines.append(TenantLine(tenant, lookup(user=user, number=number, tenant=tenant)))
        except NumberBoxError as exc:
            lines.append(TenantLine(tenant, problem=str(exc)))
    return lines


def _rules(route: RouteRow, schedules: dict[int, str]) -> str:
    """A route's rules in words, as the prefix list says them."""
    parts = []
    if route.caller_prefix:
        parts.append(f"caller {route.caller_prefix}…")
    if route.caller_pattern:
        parts.append(f"caller ~{route.caller_pattern}")
    if route.schedule_id:
        parts.append(f"when {schedules.get(route.schedule_id, route.schedule_id)}")
    return ", ".join(parts) or "any caller, always"
