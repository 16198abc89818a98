"""A realistic wholesale route table: 1,000,000 prefixes across several tenants.

Real country codes, weighted by traffic; under each, fixed and mobile ranges a few
digits deep as carriers' rate decks have them (e.g. 447, 4474, 44745); several
trunks per route with priorities and weights taken from a few hundred route
"profiles" per tenant, as wholesale tables share their target sets; some reject
ranges (premium numbers) and length bounds. Deterministic: the same seed gives
the same file.

    python -m bench.generate --prefixes 1000000      # writes bench/data/<tenant>.csv
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


TENANTS = [
    TenantSpec("wholesale-eu", "10.1.0.0/16", 0.55, 8, 3),
    TenantSpec("wholesale-us", "10.2.0.0/16", 0.30, 6, 3),
    TenantSpec("itsp", "10.3.0.0/16", 0.12, 4, 2),
    TenantSpec("pbx-host", "10.4.0.0/16", 0.03, 2, 2),
]


def trunk_names(spec: TenantSpec) -> list[str]:
    """'carrier/trunk' of the tenant's trunks, as the CSV names them."""
    return [
        f"{spec.slug} carrier {c}/trunk-{t}"
        for c in range(1, spec.carriers + 1)
        for t in range(1, spec.trunks_per_carrier + 1)
    ]


def ensure_tenants() -> None:
    """Create (idempotently) the tenants, their source networks, carriers and trunks."""
    from routing.models import Carrier, Trunk
    from tenants.models import Tenant, TenantSource

    for spec in TENANTS:
        tenant, _ = Tenant.objects.get_or_create(slug=spec.slug, defaults={"name": spec.slug})
        TenantSource.objects.get_or_create(network=spec.network, defaults={"tenant": tenant})
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


def write_tenant_csv(spec: TenantSpec, count: int, path: Path, seed: int = 6) -> int:
    """Write `count` prefixes of `spec` as an import_prefixes CSV; returns the row count."""
    rng = random.Random(f"{seed}-{spec.slug}")
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
            writer.writerow(
                {
                    "prefix": prefix,
                    "action": "route",
                    "routing_mode": "parallel" if rng.random() < 0.02 else "serial",
                    "targets": rng.choice(sets),
                    "min_length": 10 if bounded else "",
                    "max_length": 15 if bounded else "",
                    "description": description,
                    "is_active": "yes" if rng.random() > 0.01 else "no",
                }
            )
    return count


def split(total: int) -> list[tuple[TenantSpec, int]]:
    counts = [int(total * spec.share) for spec in TENANTS]
    counts[0] += total - sum(counts)
    return list(zip(TENANTS, counts, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args()
    for spec, count in split(args.prefixes):
        path = args.out / f"{spec.slug}.csv"
        write_tenant_csv(spec, count, path)
        print(f"{path}: {count:,} prefixes")


if __name__ == "__main__":
    main()
