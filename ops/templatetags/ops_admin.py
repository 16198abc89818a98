"""Template tags of the admin overrides: links into the route simulator."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.http import urlencode

from ops.simulator import simulator_url
from routing.models import DialPrefix
from routing.simulation import sample_number
from tenants.models import Tenant

register = template.Library()


@register.simple_tag
def simulator_link(obj) -> str:
    """The simulator prefilled for a tenant or a prefix, or "" for other objects."""
    if isinstance(obj, Tenant) and obj.pk:
        return simulator_url(tenant=obj.slug)
    if isinstance(obj, DialPrefix) and obj.pk:
        number = sample_number(obj.prefix, obj.min_length, obj.max_length)
        return simulator_url(tenant=obj.tenant.slug, callee=number)
    return ""


@register.simple_tag
def route_changes_link(obj) -> str:
    """The recent changes of one route (the prefix and its targets), or "" for others."""
    if isinstance(obj, DialPrefix) and obj.pk:
        return f"{reverse('ops:recent-changes')}?{urlencode({'prefix': obj.pk})}"
    return ""


@register.filter
def percent(share: float | None) -> str:
    """0.4567 -> "45.7%"; None (nothing to divide) -> "—"."""
    return "—" if share is None else f"{100 * share:.1f}%"


@register.filter
def or_dash(value, suffix: str = "") -> str:
    """The value with a unit, rounded to a tenth when it is a float; None -> "—"."""
    if value is None:
        return "—"
    return f"{value:.1f}{suffix}" if isinstance(value, float) else f"{value}{suffix}"


@register.simple_tag
def has_change_reason(records) -> bool:
    """Whether any historical record of the page has a change reason (the column's worth)."""
    return any(getattr(record, "history_change_reason", None) for record in records)
