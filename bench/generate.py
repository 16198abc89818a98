"""A realistic wholesale route table: 1,000,000 prefixes in 200 plans of 4 tenants.

Real country codes, weighted by traffic; under each, fixed and mobile ranges a few
digits deep as carriers' rate decks have them (e.g. 447, 4474, 44745); several
trunks per route with priorities and weights taken from a few hundred route
"profiles" per tenant, as wholesale tables share their target sets; some reject
ranges (premium numbers) and length bounds. Deterministic: the same seed gives
the same file.

Since customers and routing plans: each tenant has several plans (named route
tables, the first "Default"), a few big ones and many small ones (plan k of a
tenant gets a share ~ 1/k of its prefixes), all routing to the tenant's carriers;
and customers, each on a plan, recognised by source networks (/24-/32 inside the
tenant's /16, some with a port, some pairs behind one address), a technical
prefix (4-6 digits and #), an account, or a mix; plus the tenant's default
customer on "Default". See `customers_for()`.

    python -m bench.generate --prefixes 1000000  # writes bench/data/<tenant>/<plan>-<n>.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from dataclasses import dataclass
from pathlib import Path

from bench.common import DATA
from routing.rows import CSV_COLUMNS as COLUMNS

# (country code, relative weight of its ranges): the big destinations get most rows.
COUNTRIES = [
    ("1", 40), ("7", 12), ("20", 6), ("27", 5), ("30", 3), ("31", 6), ("32", 4), ("33", 14),
    ("34", 10), ("36", 3), ("39", 10), ("40", 4), ("41", 5), ("43", 4), ("44", 16), ("45", 3),
    ("46", 4), ("47", 3), ("48", 6), ("49", 16), ("51", 3), ("52", 8), ("53", 2), ("54", 5),
    ("55", 12), ("56", 3), ("57", 5), ("58", 3), ("60", 4), ("61", 6), ("62", 8), ("63", 7),
    ("64", 2), ("65", 3), ("66", 5), ("81", 8), ("82", 5), ("84", 6), ("86", 20), ("90", 6),
    ("91", 20), ("92", 6), ("93", 2), ("94", 2), ("95", 2), ("98", 4), ("212", 3), ("213", 3),
    ("216", 2), ("218", 1), ("220", 1), ("221", 2), ("225", 2), ("229", 1), ("233", 3),
    ("234", 6), ("237", 2), ("243", 2), ("244", 2), ("254", 3), ("255", 2), ("256", 2),
    ("260", 1), ("263", 1), ("351", 3), ("352", 1), ("353", 2), ("354", 1), ("355", 1),
    ("357", 1), ("358", 2), ("359", 2), ("370", 1), ("371", 1), ("372", 1), ("380", 4),
    ("381", 2), ("385", 1), ("386", 1), ("420", 2), ("421", 1), ("852", 2), ("855", 1),
    ("880", 4), ("886", 2), ("961", 1), ("962", 1), ("963", 1), ("964", 2), ("965", 1),
    ("966", 3), ("971", 3), ("972", 2), ("974", 1), ("977", 1), ("992", 1), ("994", 1),
    ("995", 1), ("998", 2),
]  # fmt: skip

# Leading digits of mobile ranges (national significant number), else fixed.
MOBILE_LEADS = "6789"


@dataclass(frozen=True)
class TenantSpec:
    slug: str
    network: str
    share: float  # of the prefixes
    carriers: int
    trunks_per_carrier: int
    plans: int = 1  # routing plans, "Default" first
    customers: int = 0  # besides the default customer


# 50 carriers in all (carriers belong to a tenant; every plan of a tenant routes to
# its carriers), 200 plans, 2,000 customers; the wholesale tenants have most of each.
TENANTS = [
    TenantSpec("wholesale-eu", "10.1.0.0/16", 0.55, 24, 3, plans=110, customers=1000),
    TenantSpec("wholesale-us", "10.2.0.0/16", 0.30, 14, 3, plans=60, customers=600),
    TenantSpec("itsp", "10.3.0.0/16", 0.12, 8, 2, plans=22, customers=300),
    TenantSpec("pbx-host", "10.4.0.0/16", 0.03, 4, 2, plans=8, customers=100),
]

# Route rules (`--rules SHARE`): that share of route prefixes gets a caller-conditioned
# route beside it, and half of those also a peak and an off-peak scheduled route
# (disjoint windows in Paris time; the unscheduled route stays the fallback). The
# base rows are drawn from the same random stream as without rules: the same table
# plus the rules.
SCHEDULES = [
    ("Peak", "Europe/Paris", "Mon-Fri 08:00-20:00"),
    ("Off-peak", "Europe/Paris", "Mon-Fri 00:00-08:00; Mon-Fri 20:00-24:00; Sat-Sun"),
]
CALLER_PREFIXES = ["4930", "49", "33", "3312", "1"]  # the benches' callers are +4930...

# Names of a tenant's first plans; the others are "Plan 007" and so on.
PLAN_NAMES = ["Default", "Premium", "Standard", "CLI", "NCLI", "Economy", "Mobile only"]


def trunk_names(spec: TenantSpec) -> list[str]:
    """'carrier/trunk' of the tenant's trunks, as the CSV names them."""
    return [
        f"{spec.slug} carrier {c}/trunk-{t}"
        for c in range(1, spec.carriers + 1)
        for t in range(1, spec.trunks_per_carrier + 1)
    ]


def plan_names(spec: TenantSpec) -> list[str]:
    return [PLAN_NAMES[k] if k < len(PLAN_NAMES) else f"Plan {k:03d}" for k in range(spec.plans)]


def ensure_tenants() -> None:
    """Create (idempotently) the tenants, their source networks, plans, carriers and trunks.

    A new tenant is saved through routing.services, as the admin and the API do, so
    it starts with its plan "Default" and default customer; a tenant from before
    plans (made with the ORM by an older setup) gets them here.
    """
    from routing.models import Carrier, Customer, RoutingPlan, Schedule, Trunk
    from routing.services import save_row
    from tenants.models import Tenant, TenantSource

    for spec in TENANTS:
        tenant = Tenant.objects.filter(slug=spec.slug).first()
        if tenant is None:
            tenant = Tenant(slug=spec.slug, name=spec.slug)
            save_row(user=None, row=tenant)
        TenantSource.objects.get_or_create(network=spec.network, defaults={"tenant": tenant})
        for name, zone, periods in SCHEDULES:
            Schedule.objects.get_or_create(
                tenant=tenant, name=name, defaults={"timezone": zone, "periods": periods}
            )
        plans = {
            name: RoutingPlan.objects.get_or_create(tenant=tenant, name=name)[0]
            for name in plan_names(spec)
        }
        if not Customer.objects.filter(tenant=tenant, is_default=True).exists():
            Customer.objects.create(
                tenant=tenant, name="Default", plan=plans["Default"], is_default=True
            )
        for name in trunk_names(spec):
            carrier_name, trunk_name = name.split("/")
            carrier, _ = Carrier.objects.get_or_create(tenant=tenant, name=carrier_name)
            number = int(trunk_name.rsplit("-", 1)[1])
            Trunk.objects.get_or_create(
                carrier=carrier,
                name=trunk_name,
                defaults={
                    "host": f"192.0.2.{(carrier.pk * 7 + number) % 250 + 1}",
                    "port": 5060,
                    "transport": "udp",
                    "from_uri": "sip:{caller}@sbc.example.net" if number == 1 else "",
                    "fr_timer": 2000 if number == 2 else None,
                },
            )


def profiles(rng: random.Random, names: list[str], count: int) -> list[str]:
    """Target sets shared by many prefixes: 1-4 trunks, failover priorities, 70/30 splits."""
    found = []
    for _ in range(count):
        chosen = rng.sample(names, rng.choice([1, 2, 2, 3, 3, 3, 4]))
        parts = []
        for position, name in enumerate(chosen):
            priority = 1 if position < 2 and rng.random() < 0.4 else position + 1
            weight = rng.choice([100, 100, 70, 30, 50])
            parts.append(f"{name}:{priority}:{weight}")
        found.append("|".join(parts))
    return found


def prefixes_for(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """`count` distinct (prefix, description) under real country codes, sorted."""
    codes = [code for code, _ in COUNTRIES]
    weights = [weight for _, weight in COUNTRIES]
    found: dict[str, str] = {code: f"+{code}" for code in codes[: min(len(codes), count)]}
    while len(found) < count:
        code = rng.choices(codes, weights)[0]
        mobile = rng.random() < 0.6
        lead = rng.choice(MOBILE_LEADS) if mobile else rng.choice("123459")
        depth = rng.choices([0, 1, 2, 3, 4, 5, 6], [4, 10, 20, 26, 22, 12, 6])[0]
        prefix = code + lead + "".join(rng.choices("0123456789", k=depth))
        found.setdefault(prefix, f"+{code} {'mobile' if mobile else 'fixed'}")
    return sorted(found.items())


def write_tenant_csv(
    spec: TenantSpec, count: int, path: Path, seed: int | str = 6, rules: float = 0.0
) -> int:
    """Write `count` prefixes of `spec` as an import_prefixes CSV; returns the row count
    (more than `count` with `rules`: a ruled prefix has several routes)."""
    rng = random.Random(f"{seed}-{spec.slug}")
    ruling = random.Random(f"{seed}-{spec.slug}-rules")
    rows = 0
    sets = profiles(rng, trunk_names(spec), 300)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        # By column name: a column added to routing.rows since is left empty (its default).
        writer = csv.DictWriter(out, COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        for prefix, description in prefixes_for(rng, count):
            if rng.random() < 0.015:
                writer.writerow(
                    {
                        "prefix": prefix,
                        "action": "reject",
                        "routing_mode": "serial",
                        "reject_code": 403,
                        "reject_reason": "Barred",
                        "is_active": "yes",
                    }
                )
                continue
            bounded = rng.random() < 0.1
            row = {
                "prefix": prefix,
                "action": "route",
                "routing_mode": "parallel" if rng.random() < 0.02 else "serial",
                "targets": rng.choice(sets),
                "min_length": 10 if bounded else "",
                "max_length": 15 if bounded else "",
                "description": description,
                "is_active": "yes" if rng.random() > 0.01 else "no",
            }
            writer.writerow(row)
            rows += 1
            if rules and ruling.random() < rules:
                variants = [{"caller_prefix": ruling.choice(CALLER_PREFIXES)}]
                if ruling.random() < 0.5:
                    variants += [{"schedule": name} for name, _, _ in SCHEDULES]
                for variant in variants:
                    writer.writerow({**row, "targets": ruling.choice(sets), **variant})
                    rows += 1
    return rows


def split(total: int) -> list[tuple[TenantSpec, int]]:
    counts = [int(total * spec.share) for spec in TENANTS]
    counts[0] += total - sum(counts)
    return list(zip(TENANTS, counts, strict=True))


def plan_split(spec: TenantSpec, total: int) -> list[tuple[str, int]]:
    """(plan name, prefix count) of a tenant's plans: plan k gets a share ~ 1/k.

    A few big plans (the tenant's main A-Z tables) and a long tail of small ones
    (a customer's special routes), none under 100 prefixes.
    """
    weights = [1 / (k + 1) for k in range(spec.plans)]
    counts = [max(100, int(total * w / sum(weights))) for w in weights]
    counts[0] += total - sum(counts)
    return list(zip(plan_names(spec), counts, strict=True))


def write_plan_csv(
    spec: TenantSpec, plan: str, count: int, path: Path, seed: int = 6, rules: float = 0.0
) -> int:
    """A plan's table: like a tenant's, with the plan's own prefixes and target sets."""
    return write_tenant_csv(spec, count, path, seed=f"{seed}-{plan}", rules=rules)


def plan_file(
    spec: TenantSpec, plan: str, count: int, root: Path = DATA, rules: float = 0.0
) -> Path:
    suffix = f"-rules{round(rules * 100)}" if rules else ""
    return root / spec.slug / f"{plan.lower().replace(' ', '-')}-{count}{suffix}.csv"


@dataclass(frozen=True)
class CustomerSpec:
    name: str
    plan: str
    tech_prefix: str = ""
    account: str = ""
    sources: tuple[tuple[str, int | None], ...] = ()
    is_active: bool = True


# How customers are recognised (share of a tenant's customers): by source networks
# only, by one address and port (PBXs behind one NAT), a network and a technical
# prefix, a technical prefix only, an account only, an account and a network.
RULE_MIX = [("net", 40), ("port", 10), ("net+tech", 8), ("tech", 24), ("account", 14),
            ("account+net", 4)]  # fmt: skip
# Network sizes of customers' sources, as prefix length: weight.
NETWORK_SIZES = {24: 8, 26: 12, 27: 10, 28: 20, 29: 20, 30: 10, 32: 20}


def customers_for(spec: TenantSpec, seed: int = 6) -> list[CustomerSpec]:
    """The tenant's customers (not its default customer), deterministic.

    Networks do not overlap (each /24 of the tenant's /16 is whole, carved into
    smaller blocks, or left to unknown callers, who get the default customer);
    technical prefixes and accounts are unique; 1% of customers are inactive.
    Every plan has at least one customer; the others go to plans by size.
    """
    import ipaddress

    rng = random.Random(f"{seed}-{spec.slug}-customers")
    base = ipaddress.ip_network(spec.network)
    blocks = list(range(256))
    rng.shuffle(blocks)
    fresh = iter(blocks)
    carving = {"block": None, "next": 256}

    def network(length: int) -> str:
        if length == 24:
            block, start = next(fresh), 0
        else:
            size = 2 ** (32 - length)
            start = -(-carving["next"] // size) * size  # aligned
            if carving["block"] is None or start + size > 256:
                carving["block"], start = next(fresh), 0
            carving["next"] = start + size
            block = carving["block"]
        address = base.network_address + block * 256 + start
        return str(ipaddress.ip_network(f"{address}/{length}"))

    plans = plan_names(spec)
    sizes = [count for _, count in plan_split(spec, 1_000_000)]
    used_prefixes: set[str] = set()
    found = []
    shared: tuple[str, int] | None = None  # an address with one PBX on it already
    kinds, kind_weights = zip(*RULE_MIX, strict=True)
    for n in range(spec.customers):
        plan = plans[n + 1] if n + 1 < len(plans) else rng.choices(plans, sizes)[0]
        kind = rng.choices(kinds, kind_weights)[0]
        tech, account, sources = "", "", []
        if "tech" in kind:
            while not tech or tech in used_prefixes:
                tech = str(rng.randint(10**3, 10 ** rng.choice([4, 5, 6]) - 1)) + "#"
            used_prefixes.add(tech)
        if "account" in kind:
            account = f"{spec.slug}-acct-{n:04d}"
        if kind == "port":
            if shared is not None:  # a second PBX behind the same address
                sources.append((shared[0], shared[1] + 10))
                shared = None
            else:
                shared = (network(32), 5060)
                sources.append(shared)
        elif "net" in kind:
            lengths, weights = zip(*NETWORK_SIZES.items(), strict=True)
            for _ in range(rng.choice([1, 1, 1, 1, 2])):
                sources.append((network(rng.choices(lengths, weights)[0]), None))
        found.append(
            CustomerSpec(
                name=f"{spec.slug} customer {n:04d}",
                plan=plan,
                tech_prefix=tech,
                account=account,
                sources=tuple(sources),
                is_active=rng.random() > 0.01,
            )
        )
    return found


def ensure_customers(spec: TenantSpec) -> int:
    """Make the tenant's customers exactly customers_for(spec); returns how many were written.

    Each is saved through routing.services.save_customer, so the bench table passes
    the same checks as an operator's (sources within the tenant's networks, no ties).
    """
    from django.db import transaction

    from routing.models import Customer, RoutingPlan
    from routing.services import SourceSpec, save_customer
    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug=spec.slug)
    wanted = customers_for(spec)
    plans = {plan.name: plan for plan in RoutingPlan.objects.filter(tenant=tenant)}
    existing = Customer.objects.filter(tenant=tenant, is_default=False)
    have = {
        (
            c.name,
            c.plan.name,
            c.tech_prefix,
            c.account,
            c.is_active,
            tuple((s.network, s.port) for s in c.sources.order_by("id")),
        )
        for c in existing.select_related("plan").prefetch_related("sources")
    }
    if have == {(c.name, c.plan, c.tech_prefix, c.account, c.is_active, c.sources) for c in wanted}:
        return 0
    with transaction.atomic():
        existing.delete()
        for customer in wanted:
            save_customer(
                user=None,
                customer=Customer(
                    tenant=tenant,
                    name=customer.name,
                    plan=plans[customer.plan],
                    tech_prefix=customer.tech_prefix,
                    account=customer.account,
                    is_active=customer.is_active,
                ),
                sources=[SourceSpec(network, port) for network, port in customer.sources],
            )
    return len(wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument(
        "--rules", type=float, default=0.0, help="Share of prefixes with route rules (0-1)."
    )
    args = parser.parse_args()
    for spec, count in split(args.prefixes):
        for plan, plan_count in plan_split(spec, count):
            path = plan_file(spec, plan, plan_count, args.out, args.rules)
            write_plan_csv(spec, plan, plan_count, path, rules=args.rules)
        print(f"{spec.slug}: {count:,} prefixes in {spec.plans} plans")


if __name__ == "__main__":
    main()
