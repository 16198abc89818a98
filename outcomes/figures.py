"""Quality figures read from the buckets: ASR, ACD, NER, post-dial delay p50/p95, codes.

Selectors for the pages and the health checks: `quality` sums the buckets of one
tenant over a time range, grouped by trunk, carrier, matched prefix or customer;
`timeline`, `trunk_traffic` and `failing_prefixes` feed the live traffic page
(docs/traffic.md). Each runs a fixed number of aggregating queries, whatever the
number of buckets.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db.models import F, Sum, Value
from django.db.models.functions import ExtractMinute, Floor, TruncHour

from outcomes.models import OutcomeBucket, OutcomeCount
from outcomes.records import PDD_BOUNDS_MS
from routing.health import status as health_status
from routing.models import Trunk, TrunkHealth
from tenants.models import Tenant

# Final codes that count as the network doing its job (ITU-T E.411's NER): the callee
# answered, was busy, did not answer or declined; the call was cancelled by the caller.
NER_CODES = frozenset({486, 480, 487, 600, 603})
GROUPS = {
    "trunk": ("trunk_key", "trunk_name", "carrier_name"),
    "carrier": ("carrier_name",),
    "prefix": ("prefix",),
    "customer": ("customer",),
    "tenant": ("tenant__slug",),
}
SUMS = ("attempts", "answered", "ended", "duration_s_sum", "pdd_count", "pdd_ms_sum")


class Rates:
    """ASR and ACD of anything that counts attempts, answers and ended calls' durations."""

    __slots__ = ()
    attempts: int
    answered: int
    ended: int
    duration_s_sum: float

    @property
    def asr(self) -> float | None:
        return self.answered / self.attempts if self.attempts else None

    @property
    def acd_s(self) -> float | None:
        return self.duration_s_sum / self.ended if self.ended else None


@dataclass(slots=True)
class Quality(Rates):
    """The figures of one group (`key`: the values of the group's columns)."""

    key: tuple
    attempts: int = 0
    answered: int = 0
    ended: int = 0
    duration_s_sum: float = 0.0
    pdd_count: int = 0
    pdd_ms_sum: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    pdd: Counter[int] = field(default_factory=Counter)

    @property
    def ner(self) -> float | None:
        if not self.attempts:
            return None
        effective = self.answered + sum(self.codes[code] for code in NER_CODES)
        return effective / self.attempts

    def pdd_percentile(self, share: float) -> int | None:
        """The histogram bound (ms) under which `share` of the delays fall; None when
        there are none, or when it lies above the last bound."""
        total = sum(self.pdd.values())
        if not total:
            return None
        running = 0
        for bound in PDD_BOUNDS_MS:
            running += self.pdd[bound]
            if running >= share * total:
                return bound
        return None  # in the open bucket (PDD_OVER): above the last bound

    @property
    def pdd_p50_ms(self) -> int | None:
        return self.pdd_percentile(0.50)

    @property
    def pdd_p95_ms(self) -> int | None:
        return self.pdd_percentile(0.95)


def quality(
    *, tenant: Tenant, since: dt.datetime, until: dt.datetime, by: str = "trunk"
) -> list[Quality]:
    """The figures of `tenant`'s buckets with since <= minute < until, one per group."""
    columns = GROUPS[by]
    buckets = OutcomeBucket.objects.filter(tenant=tenant, minute__gte=since, minute__lt=until)
    found: dict[tuple, Quality] = {}
    for row in buckets.values(*columns).annotate(**{name: Sum(name) for name in SUMS}):
        key = tuple(row[name] for name in columns)
        found[key] = Quality(key, **{name: row[name] for name in SUMS})
    counts: dict[tuple, dict[str, Counter[int]]] = defaultdict(lambda: defaultdict(Counter))
    rows = (
        OutcomeCount.objects.filter(bucket__in=buckets)
        .values(*(f"bucket__{name}" for name in columns), "kind", "value")
        .annotate(total=Sum("count"))
    )
    for row in rows:
        key = tuple(row[f"bucket__{name}"] for name in columns)
        counts[key][row["kind"]][row["value"]] += row["total"]
    for key, figures in found.items():
        figures.codes = counts[key][OutcomeCount.Kind.CODE]
        figures.pdd = counts[key][OutcomeCount.Kind.PDD]
    return sorted(found.values(), key=lambda figures: tuple(map(str, figures.key)))


@dataclass(slots=True, frozen=True)
class Minute(Rates):
    """One minute of a tenant's traffic; a minute without attempts has zeros and no rates."""

    at: dt.datetime
    attempts: int = 0
    answered: int = 0
    ended: int = 0
    duration_s_sum: float = 0.0


def minutes(since: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """Every minute start with since <= minute < until (since rounded down to its minute)."""
    first = since.replace(second=0, microsecond=0)
    count = max(0, -(-int((until - first).total_seconds()) // 60))
    return [first + dt.timedelta(minutes=n) for n in range(count)]


def timeline(*, tenant: Tenant, since: dt.datetime, until: dt.datetime) -> list[Minute]:
    """`tenant`'s attempts, answers and call durations per minute, one entry for every
    minute of the range (zeros where there were none, so that a chart shows the gap)."""
    rows = (
        OutcomeBucket.objects.filter(tenant=tenant, minute__gte=since, minute__lt=until)
        .values("minute")
        .annotate(**{name: Sum(name) for name in MINUTE_SUMS})
    )
    found = {row["minute"]: row for row in rows}
    return [
        Minute(at, **{name: found[at][name] for name in MINUTE_SUMS}) if at in found else Minute(at)
        for at in minutes(since, until)
    ]


MINUTE_SUMS = ("attempts", "answered", "ended", "duration_s_sum")


@dataclass(slots=True)
class TrunkTraffic:
    """A trunk's figures over a range, its attempts per slot (a sparkline) and its health.

    `trunk` is None for buckets whose trunk was deleted (or never named): their names
    are the ones the buckets kept, and they have no health.
    """

    trunk_id: int
    trunk_name: str
    carrier_name: str
    trunk: Trunk | None
    figures: Quality
    slots: list[int]
    health: str = "healthy"
    health_reason: str = ""
    health_until: dt.datetime | None = None


def trunk_traffic(
    *, tenant: Tenant, since: dt.datetime, until: dt.datetime, now: dt.datetime, slot_minutes: int
) -> list[TrunkTraffic]:
    """Every trunk of `tenant` (with or without traffic) and every trunk key its buckets
    name, busiest first: figures, attempts per `slot_minutes` slot and health at `now`.

    Four queries: two for the figures (`quality`), one for the slots, one for the trunks
    with their health. `slot_minutes` divides 60, so a slot is found from the minute's
    hour and minute in SQL.
    """
    if slot_minutes < 1 or 60 % slot_minutes:
        raise ValueError("slot_minutes must divide 60")
    starts = slot_starts(since, until, slot_minutes)
    figures = {q.key[0]: q for q in quality(tenant=tenant, since=since, until=until, by="trunk")}
    per_slot = (
        OutcomeBucket.objects.filter(tenant=tenant, minute__gte=since, minute__lt=until)
        .values(
            "trunk_key",
            hour=TruncHour("minute", tzinfo=dt.UTC),
            slot=Floor(ExtractMinute("minute", tzinfo=dt.UTC) / Value(slot_minutes)),
        )
        .annotate(attempts=Sum("attempts"))
    )
    index = {start: n for n, start in enumerate(starts)}
    slots: dict[int, list[int]] = defaultdict(lambda: [0] * len(starts))
    for row in per_slot:
        start = row["hour"].astimezone(dt.UTC) + dt.timedelta(
            minutes=int(row["slot"]) * slot_minutes
        )
        if start in index:
            slots[row["trunk_key"]][index[start]] += row["attempts"]
    trunks = {
        trunk.pk: trunk
        for trunk in Trunk.objects.filter(carrier__tenant=tenant)
        .select_related("carrier", "health")
        .order_by()
    }
    found = []
    for key in figures.keys() | trunks.keys():
        trunk = trunks.get(key)
        figure = figures.get(key) or Quality((key, trunk.name, trunk.carrier.name))
        row = TrunkTraffic(
            trunk_id=key,
            trunk_name=trunk.name if trunk else figure.key[1],
            carrier_name=trunk.carrier.name if trunk else figure.key[2],
            trunk=trunk,
            figures=figure,
            slots=slots[key] if key in slots else [0] * len(starts),
        )
        if trunk is not None:
            health = getattr(trunk, "health", None)
            row.health = health_state(health, now=now)
            row.health_reason = health.reason if health else ""
            row.health_until = health.until if health else None
        found.append(row)
    found.sort(key=lambda r: (-r.figures.attempts, r.carrier_name, r.trunk_name, r.trunk_id))
    return found


def slot_starts(since: dt.datetime, until: dt.datetime, slot_minutes: int) -> list[dt.datetime]:
    """The starts of the `slot_minutes` slots covering since..until, aligned to the hour."""
    first = since.astimezone(dt.UTC).replace(second=0, microsecond=0)
    first -= dt.timedelta(minutes=first.minute % slot_minutes)
    count = max(0, -(-int((until - first).total_seconds()) // (60 * slot_minutes)))
    return [first + dt.timedelta(minutes=n * slot_minutes) for n in range(count)]


class Health:
    """How the page and the metrics name a trunk's health (routing.models.TrunkHealth)."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    HALF_OPEN = "half-open"  # unhealthy, its cool-down over: it gets a share of calls again
    FORCED_UP = "forced up"
    FORCED_DOWN = "forced down"


def health_state(health: TrunkHealth | None, *, now: dt.datetime) -> str:
    """A trunk's health at `now` as Health names it; no row is healthy. The rule is
    routing.health.status(), the one the resolver's reading of the row follows."""
    return _HEALTH_NAMES[health_status(health, now)]


_HEALTH_NAMES = {
    "healthy": Health.HEALTHY,
    "unhealthy": Health.UNHEALTHY,
    "half_open": Health.HALF_OPEN,
    "forced_up": Health.FORCED_UP,
    "forced_down": Health.FORCED_DOWN,
}


@dataclass(slots=True, frozen=True)
class FailingPrefix:
    prefix: str
    attempts: int
    failures: int
    answered: int

    @property
    def asr(self) -> float | None:
        return self.answered / self.attempts if self.attempts else None


def failing_prefixes(
    *, tenant: Tenant, since: dt.datetime, until: dt.datetime, limit: int = 10
) -> list[FailingPrefix]:
    """The matched prefixes with the most failed attempts (any final but a 2xx), most
    first; one query, the ranking and the limit in SQL."""
    failures = F("failed_4xx") + F("failed_5xx") + F("failed_6xx") + F("failed_other")
    rows = (
        OutcomeBucket.objects.filter(tenant=tenant, minute__gte=since, minute__lt=until)
        .values("prefix")
        .annotate(attempts=Sum("attempts"), answered=Sum("answered"), failures=Sum(failures))
        .filter(failures__gt=0)
        .order_by("-failures", "prefix")[:limit]
    )
    return [
        FailingPrefix(row["prefix"], row["attempts"], row["failures"], row["answered"])
        for row in rows
    ]
