"""Small builders for test data: explicit, no magic, one call per row kind."""

from __future__ import annotations

import datetime as dt

from outcomes.models import OutcomeBucket, OutcomeCount
from routing.models import Carrier, Customer, DialPrefix, RouteTarget, RoutingPlan, Trunk
from tenants.models import Tenant, TenantSource, User
from tenants.roles import operator_group


def make_tenant(slug: str, *networks: str, **fields) -> Tenant:
    """A tenant with its source networks, a plan "Default" and a default customer on it
    (what every tenant had after the migration to plans)."""
    tenant = Tenant.objects.create(slug=slug, name=fields.pop("name", slug.title()), **fields)
    for network in networks:
        TenantSource.objects.create(tenant=tenant, network=network)
    plan = RoutingPlan.objects.create(tenant=tenant, name="Default")
    Customer.objects.create(tenant=tenant, name="Default", plan=plan, is_default=True)
    return tenant


def default_plan(tenant: Tenant) -> RoutingPlan:
    return RoutingPlan.objects.get(tenant=tenant, name="Default")


def make_trunk(tenant: Tenant, name: str, *, carrier: str = "Carrier", **fields) -> Trunk:
    carrier_obj, _ = Carrier.objects.get_or_create(tenant=tenant, name=carrier)
    fields.setdefault("host", f"{name}.example.net")
    return Trunk.objects.create(carrier=carrier_obj, name=name, **fields)


def make_route(
    tenant: Tenant, prefix: str, *targets: Trunk | tuple[Trunk, int, int], **fields
) -> DialPrefix:
    """A DialPrefix with targets given as trunks (priority by position) or (trunk, p, w),
    in the tenant's plan "Default" unless `plan` is given."""
    fields.setdefault("plan", default_plan(tenant))
    row = DialPrefix.objects.create(tenant=tenant, prefix=prefix, **fields)
    for position, target in enumerate(targets, start=1):
        trunk, priority, weight = target if isinstance(target, tuple) else (target, position, 100)
        RouteTarget.objects.create(prefix=row, trunk=trunk, priority=priority, weight=weight)
    return row


def make_operator(username: str, tenant: Tenant | None, **fields) -> User:
    user = User.objects.create_user(
        username=username, password="pw", tenant=tenant, is_staff=True, **fields
    )
    if tenant is not None:
        user.groups.add(operator_group())
    return user


def make_bucket(
    tenant: Tenant,
    trunk: Trunk | None,
    minute: dt.datetime,
    *,
    codes: dict[int, int],
    durations: tuple[float, ...] = (),
    pdd: dict[int, int] | None = None,
    prefix: str = "33",
    customer: str = "Default",
) -> OutcomeBucket:
    """One minute's bucket as the ingest would write it: attempts by final SIP code,
    the answered calls that ended with their durations, a post-dial delay histogram."""
    by_class = {2: 0, 4: 0, 5: 0, 6: 0, 0: 0}
    for code, count in codes.items():
        by_class[code // 100 if code // 100 in by_class else 0] += count
    bucket = OutcomeBucket.objects.create(
        tenant=tenant,
        minute=minute.replace(second=0, microsecond=0),
        trunk=trunk,
        trunk_key=trunk.pk if trunk else 0,
        trunk_name=trunk.name if trunk else "",
        carrier_name=trunk.carrier.name if trunk else "",
        prefix=prefix,
        customer=customer,
        attempts=sum(codes.values()),
        answered=by_class[2],
        failed_4xx=by_class[4],
        failed_5xx=by_class[5],
        failed_6xx=by_class[6],
        failed_other=by_class[0],
        ended=len(durations),
        duration_s_sum=sum(durations),
        pdd_count=sum((pdd or {}).values()),
    )
    OutcomeCount.objects.bulk_create(
        OutcomeCount(bucket=bucket, kind=kind, value=value, count=count)
        for kind, counter in (("code", codes), ("pdd", pdd or {}))
        for value, count in counter.items()
    )
    return bucket
