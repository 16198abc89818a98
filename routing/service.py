"""The entry point every transport calls: route one call with the configured table."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from routing.compiled import compiled_route_table
from routing.resolver import CallRequest, Decision, RouteTable, RoutingDefaults, resolve
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
    )


def decide(request: CallRequest, *, table: RouteTable | None = None) -> Decision:
    """Resolve `request` against the configured route table and platform defaults."""
    return resolve(request, table=table or get_route_table(), defaults=routing_defaults())
