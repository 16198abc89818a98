"""The entry point every transport calls: route one call with the configured table,
rates, blocklists (the decision deadline is routing.deadline)."""

from __future__ import annotations

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
    return RoutingDefaults(
        fr_timer=settings.ROUTING_FR_TIMER or None,
        fr_inv_timer=settings.ROUTING_FR_INV_TIMER or None,
        health_probe_percent=settings.ROUTING_HEALTH_PROBE_PERCENT,
    )


def get_rate_source() -> RateSource | None:
    """The rates least-cost routes are priced by: settings.ROUTING_RATE_SOURCE, a dotted
    path to a callable (rating.lookup.rate_source: this process's rate decks); empty:
    none. Named by a setting, not imported, so routing never depends on rating."""
    name = settings.ROUTING_RATE_SOURCE
    return import_string(name)() if name else None


def get_screen() -> Screen | None:
    """The blocklists calls are screened against: settings.ROUTING_SCREEN_SOURCE, a dotted
    path to a callable (blocklists.lookup.compiled_source: this process's compiled
    lists); empty: nothing is blocked. A setting, so routing never imports blocklists."""
    name = settings.ROUTING_SCREEN_SOURCE
    return import_string(name)() if name else None


def get_decision_log():
    """Where real decisions are recorded: settings.ROUTING_DECISION_LOG, a dotted path
    to a callable (request, decision, transport) (versions.decisions.record: a sample,
    for the impact preview and the decision lookup); empty: nowhere. A setting, so
    routing never imports versions."""
    name = settings.ROUTING_DECISION_LOG
    return import_string(name) if name else None


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
