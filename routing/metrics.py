"""Prometheus metrics of routing decisions, shared by every transport.

Transports call `observe_decision()` once per answered call; ops/views.py serves
`exposition()` at /metrics.

gunicorn runs several worker processes, each with its own counters. When the
environment variable PROMETHEUS_MULTIPROC_DIR names a directory (set before the
process starts: prometheus_client reads it when the first metric is built), every
process writes its values there and `exposition()` adds them up across processes;
deploy/gunicorn.conf.py wipes the directory at start and marks dead workers. Without
it, each process reports its own values (runserver, tests, a single bridge).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

# Every outcome a transport can report (routing.resolver.Outcome plus "error").
OUTCOMES = (
    "routed",
    "location",
    "rejected",
    "no_route",
    "forbidden",
    "blocked",
    "invalid",
    "error",
)

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
# In multiprocess mode a gauge of a dead process must not count: "live" modes drop
# the files of processes marked dead.
BRIDGE_CONNECTED = Gauge(
    "evapi_bridge_connected",
    "1 while the bridge is connected to this Kamailio evapi address.",
    ["address"],
    multiprocess_mode="livemax",
)
BRIDGE_IN_FLIGHT = Gauge(
    "evapi_bridge_events_in_flight",
    "Routing events received and not yet answered.",
    multiprocess_mode="livesum",
)


def observe_decision(transport: str, outcome: str, seconds: float) -> None:
    """Count one answered call and its decision time."""
    series = _SERIES.get((transport, outcome))
    if series is None:
        # .labels() resolves the child series by name on every call (about 10 µs,
        # a visible share of a decision); the children never change, so keep them.
        series = _SERIES[(transport, outcome)] = (
            DECISIONS.labels(transport=transport, outcome=outcome),
            DECISION_SECONDS.labels(transport=transport),
        )
    series[0].inc()
    series[1].observe(seconds)


_SERIES: dict[tuple[str, str], tuple[Any, Any]] = {}


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-process deployment, if one is set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def empty_multiprocess_dir() -> None:
    """Start a server from an empty PROMETHEUS_MULTIPROC_DIR (when set): files left by
    a previous run would add a dead run's counts. For the servers' start-up hooks."""
    directory = multiprocess_dir()
    if not directory:
        return
    path = Path(directory)
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and their content type.

    Multi-process: a fresh registry that reads every process's files (the
    prometheus_client recipe); otherwise this process's own registry.
    """
    if multiprocess_dir():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
