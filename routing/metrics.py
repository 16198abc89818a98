"""Prometheus metrics of routing decisions, shared by every transport.

Transports call `observe_decision()` once per answered call. The exposition
endpoint lives in ops/.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISIONS = Counter(
    "routing_decisions_total",
    "Routing decisions answered, by transport (http, evapi, simulator, cli) and outcome.",
    ["transport", "outcome"],
)
DECISION_SECONDS = Histogram(
    "routing_decision_seconds",
    "Time to decide a call, from request parsed to answer built.",
    ["transport"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
BRIDGE_CONNECTED = Gauge(
    "evapi_bridge_connected",
    "1 while the bridge is connected to this Kamailio evapi address.",
    ["address"],
)
BRIDGE_IN_FLIGHT = Gauge(
    "evapi_bridge_events_in_flight", "Routing events received and not yet answered."
)


def observe_decision(transport: str, outcome: str, seconds: float) -> None:
    """Count one answered call and its decision time."""
    DECISIONS.labels(transport=transport, outcome=outcome).inc()
    DECISION_SECONDS.labels(transport=transport).observe(seconds)
