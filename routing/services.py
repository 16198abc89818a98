"""Writes to the route tables: the admin, the REST API and imports all come through here.

Each service is a keyword-only function that checks the write against the model's
rules (`full_clean()`), the nested rules (a route's targets) and the tenant rule
(the user may write only into their own tenant), saves it in one transaction, and
then checks again that every row it touched is one the user may see (NetBox's
post-save check): a bug elsewhere cannot write into another tenant, because the
transaction is rolled back.

Serializers and admin forms parse and render; they call `check_targets()` to show
errors early and `save_route()` / `save_row()` / `delete_row()` / `set_active()` to
write; the importer calls `require_tenant()` (its rows are checked set-based).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, ProtectedError, QuerySet
from simple_history.utils import bulk_update_with_history

from routing.models import Customer, CustomerSource, DialPrefix, RouteTarget, RoutingPlan
from tenants.models import Tenant, TenantSource
from tenants.scoping import EVERYTHING, is_tenant_scoped, scope_queryset, tenant_of, user_scope


class InUse(Exception):
    """A row cannot be deleted: others still use it (the message names a few)."""


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One target of a route as a write gives it: the trunk, its priority and its weight."""

    trunk_id: int
    priority: int = 1
    weight: int = 100
    schedule_id: int | None = None  # used only while this schedule is in force


# --- The tenant rule --------------------------------------------------------------------


def require_tenant(*, user, tenant: Tenant | None) -> None:
    """Refuse a write into `tenant` unless `user` operates it (None: a system write)."""
    if user is None:
        return
    scope = user_scope(user)
    if scope is EVERYTHING:
        return
    if scope is None or tenant is None or scope.pk != tenant.pk:
        raise PermissionDenied("You can only change your own tenant's routing.")


def check_written(*, user, rows: Iterable[Model]) -> None:
    """After a write: every row touched must be visible to `user`, or nothing is kept."""
    if user is None:
        return
    by_model: dict[type[Model], set] = {}
    for row in rows:
        if is_tenant_scoped(type(row)):
            by_model.setdefault(type(row), set()).add(row.pk)
    for model, pks in by_model.items():
        seen = scope_queryset(model._default_manager.filter(pk__in=pks), user).count()
        if seen != len(pks):
            raise PermissionDenied("This change would touch another tenant's rows.")


# --- Plans ------------------------------------------------------------------------------


def plan_of(*, tenant: Tenant, plan: RoutingPlan | str | None = None) -> RoutingPlan:
    """The plan a write goes to: `plan` (a plan of `tenant`, or its name), or else the
    tenant's only plan; a ValidationError says which plans there are otherwise."""
    if isinstance(plan, RoutingPlan):
        if plan.tenant_id != tenant.pk:
            raise ValidationError({"plan": "Pick a routing plan of this tenant."})
        return plan
    plans = list(RoutingPlan.objects.filter(tenant=tenant).order_by("name"))
    if plan is not None:
        found = [p for p in plans if p.name == plan]
        if found:
            return found[0]
        names = ", ".join(p.name for p in plans) or "none yet"
        raise ValidationError({"plan": f"{tenant} has no routing plan {plan!r} ({names})."})
    if len(plans) == 1:
        return plans[0]
    names = ", ".join(p.name for p in plans)
    raise ValidationError(
        {"plan": f"{tenant} has {len(plans)} routing plans ({names or 'none'}): name one."}
    )


# --- Routes and their targets -----------------------------------------------------------


class TargetsInvalid(Exception):
    """Some targets of a write are not valid: `errors` maps their position to the error."""

    def __init__(self, errors: dict[int, ValidationError]) -> None:
        super().__init__(f"{len(errors)} target(s) not valid")
        self.errors = errors


def check_targets(route: DialPrefix, targets: Sequence[TargetSpec]) -> list[RouteTarget]:
    """The targets a route is to have, each checked (raises TargetsInvalid)."""
    errors: dict[int, ValidationError] = {}
    seen: set[int] = set()
    checked = []
    for position, spec in enumerate(targets):
        target = RouteTarget(
            prefix=route,
            trunk_id=spec.trunk_id,
            priority=spec.priority,
            weight=spec.weight,
            schedule_id=spec.schedule_id,
        )
        try:
            if spec.trunk_id in seen:
                raise ValidationError({"trunk": "This trunk is already a target of this route."})
            seen.add(spec.trunk_id)
            target.full_clean(exclude=["prefix"], validate_unique=False)
            checked.append(target)
        except ValidationError as exc:
            errors[position] = exc
    if errors:
        raise TargetsInvalid(errors)
    return checked


def route_warnings(route: DialPrefix, trunks: Sequence) -> list[str]:
    """What is allowed but probably wrong, for the admin and the API to show."""
    if route.action != "route":
        return []
    if not trunks:
        fallback = "answer 503" if route.is_final else "fall back to a shorter prefix"
        return [f"This route has no target: its calls {fallback}."]
    shortest = max(route.min_length or 0, len(route.prefix or ""), 1)
    return [
        f"{trunk} strips {trunk.strip_digits} digits, but this route matches numbers as short as "
        f"{shortest} digits: such calls skip it. Set a minimum length above "
        f"{trunk.strip_digits}, or strip fewer digits."
        for trunk in trunks
        if trunk.strip_digits >= shortest
    ]


def save_route(
    *, user, route: DialPrefix, targets: Sequence[TargetSpec] | None = None
) -> list[str]:
    """Validate and save `route` and, when given, make its targets exactly `targets`.

    Raises ValidationError (the route), TargetsInvalid (its targets) or
    PermissionDenied (the tenant rule). Targets are matched by trunk, so an unchanged
    target keeps its id and history. Returns warnings for the operator.
    """
    with transaction.atomic():
        require_tenant(user=user, tenant=route.tenant if route.tenant_id else None)
        _refuse_tenant_move(route)
        route.full_clean()
        if targets is not None:
            check_targets(route, targets)
        route.save()
        touched: list[Model] = [route]
        if targets is not None:
            touched += _replace_targets(route, targets)
        check_written(user=user, rows=touched)
        trunks = [t.trunk for t in route.targets.select_related("trunk__carrier")]
    return route_warnings(route, trunks)


def _refuse_tenant_move(row: Model) -> None:
    """A row never changes tenant: it is created in the other tenant instead."""
    if row.pk is None or not hasattr(row, "tenant_id"):
        return
    stored = type(row)._default_manager.filter(pk=row.pk).values_list("tenant_id", flat=True)
    if list(stored) not in ([row.tenant_id], []):
        raise ValidationError(
            {"tenant": "A row cannot move to another tenant; create it there instead."}
        )


def _replace_targets(route: DialPrefix, targets: Sequence[TargetSpec]) -> list[RouteTarget]:
    existing = {target.trunk_id: target for target in route.targets.all()}
    kept = []
    for spec in targets:
        target = existing.pop(spec.trunk_id, None)
        if target is None:
            target = RouteTarget(prefix=route, trunk_id=spec.trunk_id)
        elif (target.priority, target.weight, target.schedule_id) == (
            spec.priority,
            spec.weight,
            spec.schedule_id,
        ):
            kept.append(target)  # unchanged: no write, no history entry
            continue
        target.priority, target.weight = spec.priority, spec.weight
        target.schedule_id = spec.schedule_id
        target.save()
        kept.append(target)
    for target in existing.values():
        target.delete()
    if hasattr(route, "_prefetched_objects_cache"):
        route._prefetched_objects_cache.pop("targets", None)
    return kept


# --- Other rows -------------------------------------------------------------------------


def save_row(*, user, row: Model) -> None:
    """Validate and save one tenant-owned row (tenant, source, carrier, trunk, plan).

    A new tenant starts with a routing plan "Default" and a default customer on it,
    so its calls route as soon as it has source networks and routes.
    """
    with transaction.atomic():
        new_tenant = isinstance(row, Tenant) and row.pk is None
        require_tenant(user=user, tenant=tenant_of(row) if is_tenant_scoped(type(row)) else None)
        _refuse_tenant_move(row)
        row.full_clean()
        row.save()
        touched: list[Model] = [row]
        if new_tenant:
            plan = RoutingPlan.objects.create(tenant=row, name="Default")
            touched.append(plan)
            touched.append(
                Customer.objects.create(tenant=row, name="Default", plan=plan, is_default=True)
            )
        check_written(user=user, rows=touched)


# --- Customers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A network (and optional port) a customer's calls come from, as a write gives it."""

    network: str
    port: int | None = None


class SourcesInvalid(Exception):
    """Some sources of a customer are not valid: `errors` maps their position to the error."""

    def __init__(self, errors: dict[int, ValidationError]) -> None:
        super().__init__(f"{len(errors)} source(s) not valid")
        self.errors = errors


def check_customer(customer: Customer, sources: Sequence[SourceSpec]) -> list[SourceSpec]:
    """The rules of a customer's recognition (ValidationError / SourcesInvalid); returns
    the sources normalised (a network in its canonical CIDR form).

    A customer has at least one rule (a source, a technical prefix, an account),
    except the default customer, which has none; each source lies within one of the
    tenant's source networks; and no other customer of the tenant is recognised
    exactly the same way (same account and technical prefix, and the same network
    and port, or both without sources), since the call would then be ambiguous.
    """
    customer.full_clean()
    if customer.is_default and sources:
        raise ValidationError(
            {
                "is_default": "The default customer takes the calls no rule matches: "
                "it cannot have source networks of its own."
            }
        )
    if not customer.is_default and not (customer.tech_prefix or customer.account or sources):
        raise ValidationError(
            "Give the customer at least one rule: a source network, a technical prefix or "
            "an account (or make it the tenant's default customer)."
        )
    tenant_networks = list(
        TenantSource.objects.filter(tenant_id=customer.tenant_id).values_list("network", flat=True)
    )
    errors: dict[int, ValidationError] = {}
    normalised = []
    for position, spec in enumerate(sources):
        source = CustomerSource(customer=customer, network=spec.network, port=spec.port)
        try:
            source.full_clean(exclude=["customer"], validate_unique=False)
            if not any(_within(source.network, network) for network in tenant_networks):
                raise ValidationError(
                    {
                        "network": f"{source.network} is not within the tenant's source networks "
                        f"({', '.join(tenant_networks) or 'none yet'}): calls from it never "
                        "reach this tenant."
                    }
                )
            if (source.network, source.port) in normalised:
                raise ValidationError({"network": "This network and port are listed twice."})
            normalised.append((source.network, source.port))
        except ValidationError as exc:
            errors[position] = exc
    if errors:
        raise SourcesInvalid(errors)
    _refuse_ties(customer, set(normalised))
    return [SourceSpec(network, port) for network, port in normalised]


def _within(inner: str, outer: str) -> bool:
    a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
    return a.version == b.version and a.subnet_of(b)


def _refuse_ties(customer: Customer, sources: set[tuple[str, int | None]]) -> None:
    others = Customer.objects.filter(
        tenant_id=customer.tenant_id,
        account=customer.account,
        tech_prefix=customer.tech_prefix,
        is_default=False,
    ).exclude(pk=customer.pk)
    for other in others.prefetch_related("sources"):
        theirs = {(s.network, s.port) for s in other.sources.all()}
        shared = sources & theirs
        if shared or (not sources and not theirs):
            where = ", ".join(
                f"network {network}" + (f" port {port}" if port else "")
                for network, port in sorted(shared, key=str)
            )
            raise ValidationError(
                f"Customer {other.name} is already recognised the same way"
                + (f" ({where})" if where else "")
                + ": give this one another network, port, technical prefix or account."
            )


def save_customer(*, user, customer: Customer, sources: Sequence[SourceSpec] | None) -> None:
    """Validate and save a customer and, when given, exactly these sources."""
    with transaction.atomic():
        require_tenant(user=user, tenant=customer.tenant if customer.tenant_id else None)
        _refuse_tenant_move(customer)
        if sources is None and customer.pk is not None:
            current = [
                SourceSpec(s.network, s.port)
                for s in CustomerSource.objects.filter(customer=customer)
            ]
        else:
            current = list(sources or ())
        check_customer(customer, current)
        customer.save()
        touched: list[Model] = [customer]
        if sources is not None:
            existing = {(s.network, s.port): s for s in customer.sources.all()}
            for spec in current:
                key = (str(CustomerSource(network=spec.network).network), spec.port)
                source = existing.pop(key, None)
                if source is None:
                    source = CustomerSource(customer=customer, network=spec.network, port=spec.port)
                    source.full_clean(exclude=["customer"])
                    source.save()
                touched.append(source)
            for source in existing.values():
                source.delete()
        check_written(user=user, rows=touched)


def delete_row(*, user, row: Model) -> None:
    """Delete a row the user may see; InUse names what still uses it."""
    with transaction.atomic():
        check_written(user=user, rows=[row])
        try:
            row.delete()
        except ProtectedError as exc:
            # Name a few (each str() may query); a trunk can be used by 10^5 routes.
            used_by = [str(obj) for obj in islice(exc.protected_objects, 5)]
            extra = len(exc.protected_objects) - len(used_by)
            more = f" and {extra} more" if extra > 0 else ""
            raise InUse(
                f"{row} is still in use by: {'; '.join(used_by)}{more}. Remove those first."
            ) from None


def set_active(*, user, queryset: QuerySet, active: bool) -> int:
    """Switch rows on or off in bulk, with history; returns how many."""
    with transaction.atomic():
        rows = list(scope_queryset(queryset, user) if user is not None else queryset)
        for row in rows:
            row.is_active = active
        bulk_update_with_history(rows, queryset.model, ["is_active"], batch_size=500)
    return len(rows)
