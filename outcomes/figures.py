"""Quality figures read from the buckets: ASR, ACD, NER, post-dial delay p50/p95, codes.

A selector for the pages and the health checks to come: sums the buckets of one
tenant over a time range, grouped by trunk, carrier, matched prefix or customer.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db.models import Sum

from outcomes.models import OutcomeBucket, OutcomeCount
from outcomes.records import PDD_BOUNDS_MS
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


@dataclass(slots=True)
class Quality:
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
    def asr(self) -> float | None:
        return self.answered / self.attempts if self.attempts else None

    @property
    def acd_s(self) -> float | None:
        return self.duration_s_sum / self.ended if self.ended else None

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
