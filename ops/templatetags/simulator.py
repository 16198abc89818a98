"""The simulator page's filter: a route named once (ops.simulator.route_label)."""

from __future__ import annotations

from django import template

from ops.simulator import route_label

register = template.Library()
register.filter("route_label", route_label)
