"""Demo traffic: three hours of made-up outcome events, so the live traffic page and the
trunk health column have something to show in `make demo`.

The events go through the real ingest (the Aggregator counts and flushes them, as it
does what kamailio.events parsed off the wire); only their content is invented, from a
seeded random generator so every run draws the same traffic. The first trunk of the
tenant's route table used by the fewest routes is made to fail its last calls, which
trips its health policy (the demo's examples in the README avoid it).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import replace

from django.db.models import Count

from outcomes.ingest import Aggregator
from outcomes.models import OutcomeBucket
from outcomes.records import Attempt, Attribution, CallEnd
from routing.models import DialPrefix, Trunk
from tenants.models import Tenant

# Per trunk: share of answered attempts, share of 5xx among the rest.
ANSWER_SHARES = (0.72, 0.55, 0.64, 0.8)
HOURS = 3


def seed_traffic(tenant: Tenant, *, now: float | None = None, seed: int = 7) -> int:
    """Feed `tenant` HOURS of per-minute traffic over its routed trunks; events counted.

    Once: a tenant that has buckets already is left alone (0), so seed_demo stays
    idempotent."""
    if OutcomeBucket.objects.filter(tenant=tenant).exists():
        return 0
    now = time.time() if now is None else now
    draw = random.Random(f"{seed}:{tenant.slug}")  # noqa: S311 (demo data, not security)
    trunks = list(
        Trunk.objects.filter(carrier__tenant=tenant, targets__isnull=False)
        .select_related("carrier")
        .annotate(routes_using=Count("targets"))
        .order_by("pk")
    )
    prefixes = list(
        DialPrefix.objects.filter(tenant=tenant, action="route")
        .values_list("prefix", flat=True)
        .distinct()
    )
    if not trunks or not prefixes:
        return 0
    aggregator = Aggregator(clock=lambda: now, observer=lambda outcomes, at: 0)
    counted = 0
    first_minute = int(now // 60) * 60 - HOURS * 3600
    for minute in range(first_minute, int(now), 60):
        for index, trunk in enumerate(trunks):
            answer_share = ANSWER_SHARES[index % len(ANSWER_SHARES)]
            for _ in range(draw.randint(2, 9)):
                attempt = _attempt(draw, tenant, trunk, draw.choice(prefixes), answer_share)
                attempt = replace(attempt, of=replace(attempt.of, at=minute + draw.random() * 59))
                counted += aggregator.add(attempt) is None
                if attempt.answered:
                    end = CallEnd(attempt.of, duration_s=round(draw.expovariate(1 / 95), 1))
                    counted += aggregator.add(end) is None
    aggregator.flush()
    _trip_health(min(trunks, key=lambda trunk: (trunk.routes_using, -trunk.pk)), now)
    return counted


def _attempt(draw, tenant: Tenant, trunk: Trunk, prefix: str, answer_share: float) -> Attempt:
    roll = draw.random()
    if roll < answer_share:
        code = 200
    elif roll < answer_share + (1 - answer_share) * 0.4:
        code = draw.choice((503, 502, 408))
    else:
        code = draw.choice((486, 480, 404, 487, 603))
    of = Attribution(
        decision_id=uuid.UUID(int=draw.getrandbits(128)).hex,
        tenant=tenant.slug,
        route=0,
        trunk_id=trunk.pk,
        trunk=trunk.name,
        carrier=trunk.carrier.name,
        prefix=prefix,
    )
    return Attempt(
        of,
        code=code,
        pdd_ms=draw.randint(800, 4500),
        answer_ms=draw.randint(3000, 15000) if code == 200 else None,
    )


def _trip_health(trunk: Trunk, now: float) -> None:
    """The trunk's last calls failed: as many in a row as its policy allows, and one more."""
    from outcomes.store import observe_health

    failures = (trunk.health_consecutive_failures or 5) + 1
    observe_health(
        {(trunk.carrier.tenant.slug, trunk.pk): [(now - 30 + n, True) for n in range(failures)]},
        now,
    )
