"""The entry point every transport calls: route one call with the configured table,
rates, blocklists (the decision deadline is routing.deadline)."""

from __future__ import annotations

import functools
import gc
import threading
import time

from django.conf import settings
from django.utils.module_loading import import_string

from routing.compiled import compiled_route_table
from routing.resolver import (
    CallRequest,
    Decision,
    RateSource,
    RouteTable,
    RoutingDefaults,
    Screen,
    resolve,
)
from routing.tables import DatabaseRouteTable


def get_route_table() -> RouteTable:
    """The route table named by settings.ROUTING_TABLE: "database", "compiled" or a dotted path."""
    name = settings.ROUTING_TABLE
    if name == "database":
        return DatabaseRouteTable()
    if name == "compiled":
        return compiled_route_table()  # one per process, kept current
    return import_string(name)()


def routing_defaults() -> RoutingDefaults:
    """The platform's defaults, read from settings at call time."""
    return _defaults(
        settings.ROUTING_FR_TIMER,
        settings.ROUTING_FR_INV_TIMER,
        settings.ROUTING_HEALTH_PROBE_PERCENT,
    )


@functools.lru_cache(maxsize=8)
def _defaults(fr_timer: int, fr_inv_timer: int, probe_percent: int) -> RoutingDefaults:
    return RoutingDefaults(
        fr_timer=fr_timer or None,
        fr_inv_timer=fr_inv_timer or None,
        health_probe_percent=probe_percent,
    )


@functools.lru_cache(maxsize=16)
def _named(path: str):
    """The object at a dotted path, imported once (import_string costs microseconds a call)."""
    return import_string(path)


def get_rate_source() -> RateSource | None:
    """The rates least-cost routes are priced by: settings.ROUTING_RATE_SOURCE, a dotted
    path to a callable (rating.lookup.rate_source: this process's rate decks); empty:
    none. Named by a setting, not imported, so routing never depends on rating."""
    name = settings.ROUTING_RATE_SOURCE
    return _named(name)() if name else None


def get_screen() -> Screen | None:
    """The blocklists calls are screened against: settings.ROUTING_SCREEN_SOURCE, a dotted
    path to a callable (blocklists.lookup.compiled_source: this process's compiled
    lists); empty: nothing is blocked. A setting, so routing never imports blocklists."""
    name = settings.ROUTING_SCREEN_SOURCE
    return _named(name)() if name else None


def get_decision_log():
    """Where real decisions are recorded: settings.ROUTING_DECISION_LOG, a dotted path
    to a callable (request, decision, transport) (versions.decisions.record: a sample,
    for the impact preview and the decision lookup); empty: nowhere. A setting, so
    routing never imports versions."""
    name = settings.ROUTING_DECISION_LOG
    return _named(name) if name else None


def warm_up(seconds: float, *, freeze: bool = False) -> list[str]:
    """Load this process's in-memory parts (route table, rates, blocklists) now.

    A server or bridge process calls it before taking calls, so its first calls are
    answered from memory rather than each asking the database. Waits up to `seconds`
    in all; returns the names of the parts still loading (they keep loading in the
    background, and the database answers for them until they are ready).

    With `freeze` (a server process, not a test), once they are loaded what the
    process holds is moved out of the cyclic garbage collector's sight (gc.freeze):
    a million prefixes' worth of long-lived objects made each full collection a
    100 ms pause, the whole p99.9 of a decision.
    """
    until = time.monotonic() + seconds
    loading = []
    parts = [get_route_table(), get_rate_source(), get_screen()]
    for name, part in zip(("route table", "rates", "blocklists"), parts, strict=True):
        wait_ready = getattr(part, "wait_ready", None)
        if wait_ready is not None and not wait_ready(max(until - time.monotonic(), 0.0)):
            loading.append(name)
    if not freeze:
        pass
    elif not loading:
        gc.freeze()
    else:
        threading.Thread(
            target=_freeze_when_loaded, args=(parts,), name="gc-freeze", daemon=True
        ).start()
    return loading


def _freeze_when_loaded(parts: list) -> None:
    """gc.freeze() once the parts are loaded (see warm_up)."""
    for part in parts:
        wait_ready = getattr(part, "wait_ready", None)
        if wait_ready is not None:
            wait_ready(FREEZE_WAIT_SECONDS)
    gc.freeze()


# How long a process waits for its tables before freezing what it has anyway.
FREEZE_WAIT_SECONDS = 600.0


def decide(
    request: CallRequest, *, table: RouteTable | None = None, transport: str = ""
) -> Decision:
    """Resolve `request` against the configured route table, rates and platform defaults.

    A transport (Kamailio asking) names itself, and its decisions go to the decision
    log; simulations, route tests and replays do not.
    """
    decision = resolve(
        request,
        table=table or get_route_table(),
        defaults=routing_defaults(),
        rates=get_rate_source(),
        screen=get_screen(),
    )
    if transport:
        log = get_decision_log()
        if log is not None:
            log(request, decision, transport)
    return decision
