"""Prometheus counters of outcome events (served with the others at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

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
