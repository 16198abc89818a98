"""Prometheus series of outcomes, served with the others at /metrics: counters of the
outcome events, and per-trunk gauges of the last 5 minutes read from the buckets at
scrape time (bounded to OUTCOMES_METRICS_MAX_TRUNKS trunks; docs/traffic.md)."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily

from outcomes.figures import Health, health_state
from outcomes.models import OutcomeBucket
from routing.models import Trunk, TrunkHealth

OUTCOME_EVENTS = Counter(
    "routing_outcome_events_total",
    "Outcome events from Kamailio, by result: accepted (in memory; refusals at the write "
    "count again under their reason), or the reason they were refused.",
    ["result"],
)
_CHILDREN: dict[str, object] = {}


def count_events(result: str, count: int = 1) -> None:
    child = _CHILDREN.get(result)
    if child is None:  # .labels() costs a lookup by name on every call: keep the children
        child = _CHILDREN[result] = OUTCOME_EVENTS.labels(result=result)
    child.inc(count)


# --- Per-trunk series, read from the buckets at scrape time ------------------------------
# Not process counters: every process would report the same database rows, so these
# live in their own registry that ops/views.metrics appends once to the exposition
# (routing.metrics.exposition() may read the multiprocess files instead of REGISTRY).
# Nothing else collects it, so no code path queries the database by accident.

WINDOW = dt.timedelta(minutes=5)
OTHER = "other"
LABELS = ("tenant", "carrier", "trunk")

logger = logging.getLogger("routing.outcomes")


@dataclass(slots=True)
class TrunkSeries:
    attempts: int = 0
    answered: int = 0
    healthy: int | None = None  # None: no trunk row (deleted, or buckets without a trunk)


def max_trunks() -> int:
    """OUTCOMES_METRICS_MAX_TRUNKS, read at each scrape (tests and reloads change it)."""
    return max(0, int(getattr(settings, "OUTCOMES_METRICS_MAX_TRUNKS", 200)))


def trunk_series(*, now: dt.datetime, limit: int) -> dict[tuple[str, str, str], TrunkSeries]:
    """Attempts and answers of the last WINDOW per (tenant, carrier, trunk), and health.

    Two queries: the buckets summed per trunk key, the trunks with their health. At most
    `limit` trunks get their own labels: the busiest first, then the unhealthy ones
    (a trunk out of routing has no traffic, and is what an alert wants to see), then by
    name; the others are added up into (other, other, other), which has no health.
    """
    since = now.replace(second=0, microsecond=0) - WINDOW + dt.timedelta(minutes=1)
    sums = (
        OutcomeBucket.objects.filter(minute__gte=since)
        .values("tenant__slug", "trunk_key", "carrier_name", "trunk_name")
        .annotate(attempts=Sum("attempts"), answered=Sum("answered"))
        .order_by()
    )
    found: dict[tuple[str, str, str], TrunkSeries] = defaultdict(TrunkSeries)
    keys: dict[int, tuple[str, str, str]] = {}
    for row in sums:
        label = (row["tenant__slug"], row["carrier_name"] or "-", row["trunk_name"] or "-")
        keys.setdefault(row["trunk_key"], label)
        series = found[keys[row["trunk_key"]] if row["trunk_key"] else label]
        series.attempts += row["attempts"]
        series.answered += row["answered"]
    trunks = Trunk.objects.filter(carrier__tenant__is_active=True).values_list(
        "pk",
        "name",
        "carrier__name",
        "carrier__tenant__slug",
        "health__state",
        "health__until",
        "health__override",
    )
    for pk, name, carrier, tenant, state, until, override in trunks:
        label = keys.get(pk) or (tenant, carrier, name)
        health = None
        if state is not None:
            health = TrunkHealth(state=state, until=until, override=override)
        healthy = 1 if health_state(health, now=now) in SERVING else 0
        series = found[label]
        series.healthy = healthy if series.healthy is None else min(series.healthy, healthy)
    ranked = sorted(
        found.items(), key=lambda item: (-item[1].attempts, item[1].healthy != 0, item[0])
    )
    kept = dict(ranked[:limit])
    if len(ranked) > limit:
        other = kept[(OTHER, OTHER, OTHER)] = TrunkSeries()
        for _, series in ranked[limit:]:
            other.attempts += series.attempts
            other.answered += series.answered
    return kept


# A trunk in full service: healthy, or forced up. Half-open trunks only get a share of
# calls while they prove themselves, so they count as not healthy (0).
SERVING = frozenset({Health.HEALTHY, Health.FORCED_UP})


class TrunkCollector:
    """Gauges per trunk over the last 5 minutes, computed when Prometheus scrapes."""

    def collect(self):
        try:
            series = trunk_series(now=timezone.now(), limit=max_trunks())
        except DatabaseError:
            # The other series must still be served: log, and export none of these.
            logger.warning("metrics: per-trunk series unavailable", exc_info=True)
            return
        attempts = GaugeMetricFamily(
            "routing_trunk_attempts_5m",
            "Call attempts (branches with a final reply) in the last 5 minutes.",
            labels=LABELS,
        )
        answered = GaugeMetricFamily(
            "routing_trunk_answered_5m", "Answered attempts in the last 5 minutes.", labels=LABELS
        )
        asr = GaugeMetricFamily(
            "routing_trunk_asr_5m",
            "Answer-seizure ratio (0..1) in the last 5 minutes; absent without attempts.",
            labels=LABELS,
        )
        healthy = GaugeMetricFamily(
            "routing_trunk_healthy",
            "1 when the trunk is in full service (healthy or forced up), 0 when it is "
            "unhealthy, half-open or forced down.",
            labels=LABELS,
        )
        for label, figures in series.items():
            values = list(label)
            attempts.add_metric(values, figures.attempts)
            answered.add_metric(values, figures.answered)
            if figures.attempts:
                asr.add_metric(values, figures.answered / figures.attempts)
            if figures.healthy is not None:
                healthy.add_metric(values, figures.healthy)
        yield from (attempts, answered, asr, healthy)


TRUNK_REGISTRY = CollectorRegistry(auto_describe=False)
TRUNK_REGISTRY.register(TrunkCollector())


def trunk_exposition() -> bytes:
    """The per-trunk series in Prometheus text format (empty when the database fails)."""
    return generate_latest(TRUNK_REGISTRY)
