"""Query-string filters of the route-table API (django-filter).

Filters name tenants by slug and other rows by id, as plain values: they narrow
an already tenant-scoped queryset and never validate against other tenants' rows,
so filtering by another tenant's slug gives an empty list, not a hint it exists.
"""

from __future__ import annotations

import django_filters as filters
from django import forms

from routing.models import (
    Action,
    Carrier,
    Customer,
    DialPrefix,
    RoutingMode,
    RoutingPlan,
    Schedule,
    Transport,
    Trunk,
)
from tenants.models import Tenant, TenantSource


class IdFilter(filters.NumberFilter):
    """A row id: a whole number within a 64-bit key's range, else a 400.

    NumberFilter takes any decimal (`-3e124`), which SQLite cannot bind (a 500).
    """

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("min_value", -(2**63))
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class TenantFilter(filters.FilterSet):
    class Meta:
        model = Tenant
        fields = ["slug", "is_active"]


class TenantSourceFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="tenant__slug", help_text="Tenant slug.")

    class Meta:
        model = TenantSource
        fields = ["tenant", "network"]


class CarrierFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="tenant__slug", help_text="Tenant slug.")

    class Meta:
        model = Carrier
        fields = ["tenant", "name", "is_active"]


class ScheduleFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="tenant__slug", help_text="Tenant slug.")

    class Meta:
        model = Schedule
        fields = ["tenant", "name", "timezone"]


class TrunkFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="carrier__tenant__slug", help_text="Tenant slug.")
    carrier = IdFilter(field_name="carrier_id", help_text="Carrier id.")
    transport = filters.ChoiceFilter(choices=Transport.choices)

    class Meta:
        model = Trunk
        fields = ["tenant", "carrier", "name", "host", "transport", "is_active"]


class RoutingPlanFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="tenant__slug", help_text="Tenant slug.")

    class Meta:
        model = RoutingPlan
        fields = ["tenant", "name"]


class CustomerFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="tenant__slug", help_text="Tenant slug.")
    plan = IdFilter(field_name="plan_id", help_text="Routing plan id.")

    class Meta:
        model = Customer
        fields = ["tenant", "plan", "name", "is_active", "is_default", "tech_prefix", "account"]


class DialPrefixFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="tenant__slug", help_text="Tenant slug.")
    plan = IdFilter(field_name="plan_id", help_text="Routing plan id.")
    prefix_startswith = filters.CharFilter(
        field_name="prefix", lookup_expr="startswith", help_text="Prefixes starting with this."
    )
    trunk = IdFilter(
        field_name="targets__trunk_id", distinct=True, help_text="Routes that use this trunk id."
    )
    action = filters.ChoiceFilter(choices=Action.choices)
    routing_mode = filters.ChoiceFilter(choices=RoutingMode.choices)
    schedule = IdFilter(field_name="schedule_id", help_text="Schedule id.")

    class Meta:
        model = DialPrefix
        fields = [
            "tenant",
            "plan",
            "prefix",
            "prefix_startswith",
            "action",
            "routing_mode",
            "is_active",
        ]
