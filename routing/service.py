"""The entry point every transport calls: route one call with the configured table."""

from __future__ import annotations

from routing.resolver import CallRequest, Decision, RouteTable, resolve
from routing.tables import get_route_table, routing_defaults


def decide(request: CallRequest, *, table: RouteTable | None = None) -> Decision:
    """Resolve `request` against the configured route table and platform defaults."""
    return resolve(request, table=table or get_route_table(), defaults=routing_defaults())
