"""The demo route tables: two tenants, realistic E.164 prefixes, every action.

Acme has one plan and a default customer (a hosted-PBX provider). Globex, a
wholesale operator, sells two routing plans over the same carriers: its customer
Initech (recognised by its PBX's address and port) is on Premium, Umbrella (by
the technical prefix 4711#) and every other caller on Standard. Premium routes the
UK by least cost over both vendors' rate decks (rating.demo) with a 10% margin.

Idempotent, so `seed_demo` can run on every start of the demo.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from routing.models import (
    Action,
    Carrier,
    Customer,
    CustomerSource,
    DialPrefix,
    RouteTarget,
    RoutingMode,
    RoutingPlan,
    Trunk,
)
from tenants.models import Tenant, TenantSource, User
from tenants.roles import operator_group

DEMO = {
    "acme": {
        "name": "Acme Telecom",
        "sources": ["127.0.0.0/8", "192.0.2.0/24", "2001:db8:a::/48"],
        "carriers": {
            "NorthStar Voice": [
                {"name": "ns-paris", "host": "sip.northstar.example", "port": 5060},
                {
                    "name": "ns-london",
                    "host": "198.51.100.20",
                    "port": 5080,
                    "transport": "tcp",
                    "tech_prefix": "4711#",
                    "from_uri": "sip:{caller}@acme.northstar.example",
                    "extra_headers": "P-Asserted-Identity: <sip:{caller}@acme.example>",
                },
            ],
            "BlueLine Carrier": [
                {"name": "bl-east", "host": "2001:db8:b::10", "port": 5060},
                {"name": "bl-west", "host": "sbc-west.blueline.example", "transport": "tls"},
            ],
        },
        "customers": [{"name": "Default", "plan": "Default", "is_default": True}],
        "plans": {
            "Default": [
                ("33", "France", "route", "serial", [("ns-paris", 1, 100), ("bl-east", 2, 100)]),
                (
                    "336",
                    "France mobile",
                    "route",
                    "serial",
                    [("bl-east", 1, 70), ("ns-paris", 1, 30), ("bl-west", 2, 100)],
                ),
                ("44", "United Kingdom", "route", "serial", [("ns-london", 1, 100)]),
                (
                    "447",
                    "UK mobile",
                    "route",
                    "parallel",
                    [("ns-london", 1, 100), ("bl-west", 1, 100)],
                ),
                (
                    "1",
                    "North America",
                    "route",
                    "serial",
                    [("bl-west", 1, 100), ("bl-east", 2, 50)],
                ),
                ("1900", "US premium rate", "reject", "serial", []),
                ("2", "Office extensions 2xxx", "location", "serial", []),
            ]
        },
    },
    "globex": {
        "name": "Globex Wholesale",
        "sources": ["198.51.100.0/24", "2001:db8:c::/48"],
        "carriers": {
            "Meridian Telecom": [
                {"name": "mer-a", "host": "a.meridian.example"},
                {"name": "mer-b", "host": "b.meridian.example", "strip_digits": 2},
            ],
            "Harbor Networks": [
                {"name": "hb-1", "host": "203.0.113.5"},
                {"name": "hb-2", "host": "203.0.113.6", "fr_inv_timer": 20000},
            ],
        },
        "margins": {"Premium": {"margin_percent": 10}},
        "customers": [
            {"name": "Walk-in", "plan": "Standard", "is_default": True},
            {"name": "Initech", "plan": "Premium", "sources": [("198.51.100.7/32", 5060)]},
            {"name": "Umbrella", "plan": "Standard", "tech_prefix": "4711#"},
        ],
        "plans": {
            "Standard": [
                ("49", "Germany", "route", "serial", [("mer-a", 1, 100), ("hb-1", 2, 100)]),
                ("4915", "Germany mobile", "route", "serial", [("hb-1", 1, 50), ("hb-2", 1, 50)]),
                ("33", "France", "route", "parallel", [("mer-b", 1, 100), ("hb-2", 1, 100)]),
                ("", "Default route", "route", "serial", [("mer-a", 1, 100), ("hb-2", 2, 100)]),
                ("882", "International networks", "reject", "serial", []),
            ],
            "Premium": [
                ("44", "UK (least cost)", "lcr", "serial", [("hb-1", 1, 100), ("mer-a", 1, 100)]),
                (
                    "49",
                    "Germany (premium)",
                    "route",
                    "serial",
                    [("hb-1", 1, 100), ("hb-2", 2, 100)],
                ),
                (
                    "33",
                    "France (premium)",
                    "route",
                    "serial",
                    [("hb-2", 1, 100), ("mer-a", 2, 100)],
                ),
                ("", "Default route", "route", "serial", [("hb-1", 1, 100), ("mer-a", 2, 100)]),
            ],
        },
    },
}


def _seed_routes(tenant: Tenant, plan: RoutingPlan, routes: list, trunks: dict) -> int:
    for prefix, description, action, mode, targets in routes:
        strategy = "lcr" if action == "lcr" else "fixed"
        action = "route" if action == "lcr" else action
        defaults = {
            "description": description,
            "action": action,
            "routing_mode": mode,
            "strategy": strategy,
        }
        if action == Action.REJECT:
            defaults.update(reject_code=403, reject_reason="Destination barred")
        if action == Action.LOCATION:
            defaults.update(min_length=4, max_length=4)
        if mode == RoutingMode.PARALLEL:
            defaults["routing_mode"] = RoutingMode.PARALLEL
        row, _ = DialPrefix.objects.update_or_create(
            tenant=tenant, plan=plan, prefix=prefix, defaults=defaults
        )
        row.targets.all().delete()
        RouteTarget.objects.bulk_create(
            RouteTarget(prefix=row, trunk=trunks[name], priority=priority, weight=weight)
            for name, priority, weight in targets
        )
    return len(routes)


@dataclass
class SeedResult:
    tenants: int
    prefixes: int
    users: list[str]


@transaction.atomic
def seed_demo(*, admin_password: str, operator_password: str) -> SeedResult:
    """Create or refresh the demo tenants, their tables, an admin and an operator each."""
    prefix_count = 0
    group = operator_group()
    users = []
    for slug, spec in DEMO.items():
        tenant, _ = Tenant.objects.update_or_create(slug=slug, defaults={"name": spec["name"]})
        for network in spec["sources"]:
            TenantSource.objects.update_or_create(
                network=network, defaults={"tenant": tenant, "description": "demo"}
            )
        trunks: dict[str, Trunk] = {}
        for carrier_name, trunk_specs in spec["carriers"].items():
            carrier, _ = Carrier.objects.update_or_create(tenant=tenant, name=carrier_name)
            for trunk_spec in trunk_specs:
                fields = dict(trunk_spec)
                name = fields.pop("name")
                trunks[name], _ = Trunk.objects.update_or_create(
                    carrier=carrier, name=name, defaults=fields
                )
        plans = {}
        for plan_name, routes in spec["plans"].items():
            plans[plan_name], _ = RoutingPlan.objects.get_or_create(
                tenant=tenant, name=plan_name, defaults=spec.get("margins", {}).get(plan_name, {})
            )
            prefix_count += _seed_routes(tenant, plans[plan_name], routes, trunks)
        for customer_spec in spec["customers"]:
            fields = dict(customer_spec)
            sources = fields.pop("sources", [])
            customer, _ = Customer.objects.update_or_create(
                tenant=tenant,
                name=fields.pop("name"),
                defaults={**fields, "plan": plans[fields["plan"]]},
            )
            for network, port in sources:
                CustomerSource.objects.get_or_create(customer=customer, network=network, port=port)
        operator, created = User.objects.get_or_create(
            username=f"{slug}-operator", defaults={"tenant": tenant, "is_staff": True}
        )
        if created:
            operator.set_password(operator_password)
            operator.save()
        operator.groups.add(group)
        users.append(operator.username)
    admin, created = User.objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True}
    )
    if created:
        admin.set_password(admin_password)
        admin.save()
    users.insert(0, admin.username)
    return SeedResult(tenants=len(DEMO), prefixes=prefix_count, users=users)
