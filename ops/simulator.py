"""The admin's simulator page: its form and its links (the logic is routing.simulation)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse
from django.utils.http import urlencode

from routing.models import Customer, RoutingPlan
from routing.resolver import CallRequest
from routing.simulation import Pin, SimulationRefused, simulation_target
from tenants.models import Tenant
from tenants.scoping import EVERYTHING, scope_queryset, user_scope
from versions import pins

ROUTES_CHOICES = [
    ("live", "live: what calls get now"),
    ("draft", "draft: the routes as saved, before a publish"),
    ("version", "a kept version (number below)"),
    ("as_of", "as of a date and time (below)"),
]


class OwnedChoice(forms.ModelChoiceField):
    """A customer or plan, named with its tenant (a superuser sees every tenant's)."""

    def label_from_instance(self, obj) -> str:
        return f"{obj.tenant} / {obj.name}"


class SimulatorForm(forms.Form):
    """A call as an operator describes it; the tenant choices are the user's own."""

    source_ip = forms.GenericIPAddressField(
        required=False,
        label="Source IP",
        help_text="Address the INVITE comes from, as Kamailio sees it; its network names "
        "the tenant.",
    )
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        to_field_name="slug",
        required=False,
        empty_label="(from the source IP)",
        help_text="Or simulate directly within a tenant, as the bridge's default tenant does.",
    )
    customer = OwnedChoice(
        queryset=Customer.objects.none(),
        required=False,
        empty_label="(recognised as for a real call)",
        help_text="Or simulate as one of your customers (its plan routes the call).",
    )
    plan = OwnedChoice(
        queryset=RoutingPlan.objects.none(),
        required=False,
        label="Routing plan",
        empty_label="(the customer's)",
        help_text="Or try a routing plan directly, without a customer.",
    )
    source_port = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=65535,
        help_text="Source port of the INVITE, for customers recognised by their port.",
    )
    account = forms.CharField(
        required=False,
        max_length=64,
        help_text="The X-Account header the SBC sets, for customers recognised by it.",
    )
    caller = forms.CharField(
        required=False, max_length=64, help_text="Calling number (the From user), e.g. 3312."
    )
    callee = forms.CharField(
        max_length=64, help_text="Dialled number as the R-URI carries it, e.g. +33612345678."
    )
    at = forms.DateTimeField(
        required=False,
        label="Call time",
        help_text="Optional, e.g. 2026-06-01 21:30 (UTC) or 2026-06-01T21:30+02:00. Which "
        "scheduled routes and targets are in force then; empty: now.",
    )
    call_id = forms.CharField(
        required=False,
        max_length=255,
        label="Call-ID",
        help_text="Optional. It seeds the weighted order of equal-priority trunks; without "
        "it the order is seeded by caller and callee.",
    )
    routes = forms.ChoiceField(
        required=False,
        choices=ROUTES_CHOICES,
        initial="live",
        help_text="Which routes of a staged plan answer: live (default), its draft, a kept "
        "version, or the version in force at a past time.",
    )
    routes_version = forms.IntegerField(
        required=False,
        min_value=1,
        label="Version",
        help_text="With 'a kept version': its number (pick the routing plan or customer).",
    )
    routes_as_of = forms.DateTimeField(
        required=False,
        label="As of",
        help_text="With 'as of': e.g. 2026-06-01 21:30 (UTC) or 2026-06-01T21:30+02:00.",
    )

    def __init__(self, *args: Any, user, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        scope = user_scope(user)
        tenants = Tenant.objects.all()
        if scope is not EVERYTHING:
            tenants = tenants.filter(pk=getattr(scope, "pk", None))
            self.fields["tenant"].empty_label = "(from the source IP, else my tenant)"
        self.fields["tenant"].queryset = tenants
        for name, model in (("customer", Customer), ("plan", RoutingPlan)):
            rows = scope_queryset(model.objects.select_related("tenant"), user)
            self.fields[name].queryset = rows.order_by("tenant__name", "name")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        chosen = ("source_ip", "tenant", "customer", "plan")
        # Nothing named whose call it is: simulation_target() takes the user's tenant.
        self.tenant_implied = not any(data.get(name) for name in chosen)
        try:
            self.target = simulation_target(
                user=self.user,
                source_ip=data.get("source_ip"),
                tenant=data.get("tenant"),
                customer=data.get("customer"),
                plan=data.get("plan"),
            )
        except SimulationRefused as exc:
            raise forms.ValidationError(str(exc)) from None
        self.pin = self._pin(data)
        return data

    def _pin(self, data: dict[str, Any]) -> Pin | None:
        """The versions.pins pin the "Routes" choice asks for (None: live)."""
        routes = data.get("routes") or "live"
        plan = data.get("plan") or getattr(data.get("customer"), "plan", None)
        if routes == "draft":
            return pins.draft(plan.pk) if plan is not None else pins.every_draft
        if routes == "version":
            if data.get("routes_version") is None:
                raise forms.ValidationError({"routes_version": "Give the version's number."})
            if plan is None:
                raise forms.ValidationError(
                    "To simulate a kept version, pick the routing plan or the customer: "
                    "version numbers are a plan's own."
                )
            return pins.version(plan.pk, data["routes_version"])
        if routes == "as_of":
            if data.get("routes_as_of") is None:
                raise forms.ValidationError({"routes_as_of": "Give the date and time."})
            return pins.as_of(data["routes_as_of"])
        return None

    def call_request(self) -> CallRequest:
        data, target = self.cleaned_data, self.target
        return CallRequest(
            callee=data["callee"],
            caller=data["caller"],
            source_ip=data["source_ip"] or None,
            source_port=data.get("source_port"),
            account=data.get("account") or "",
            tenant=target.tenant.slug if target.tenant else None,
            customer=target.customer,
            plan=target.plan,
            call_id=data["call_id"],
            at=data.get("at"),
        )

    def explain(self, trace: list[str]) -> list[str]:
        """The decision's trace as the operator asked: the resolver says the tenant was
        "given explicitly" (so it was, to the resolver), but the operator gave none; the
        simulator took their own."""
        if not getattr(self, "tenant_implied", False):
            return trace
        slug = self.target.tenant.slug
        given = f"tenant {slug} given explicitly"
        ours = f"tenant {slug}: yours (no source IP, tenant, customer or plan was given)"
        return [ours if step == given else step for step in trace]


def route_label(row) -> str:
    """A route as the simulator names it: "44 (UK)", or "(default route)" for the empty
    prefix, without repeating a description that only says "default route"."""
    name = row.prefix or "(default route)"
    description = (row.description or "").strip()
    if not description or (not row.prefix and description.casefold() == "default route"):
        return name
    return f"{name} ({description})"


def simulator_url(**params: str) -> str:
    query = {name: value for name, value in params.items() if value}
    url = reverse("ops:simulator")
    return f"{url}?{urlencode(query)}" if query else url
