"""The admin's simulator page: its form and its links (the logic is routing.simulation)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse
from django.utils.http import urlencode

from routing.resolver import CallRequest
from routing.simulation import SimulationRefused, simulation_tenant
from tenants.models import Tenant
from tenants.scoping import EVERYTHING, user_scope


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
    caller = forms.CharField(
        required=False, max_length=64, help_text="Calling number (the From user), e.g. 3312."
    )
    callee = forms.CharField(
        max_length=64, help_text="Dialled number as the R-URI carries it, e.g. +33612345678."
    )
    call_id = forms.CharField(
        required=False,
        max_length=255,
        label="Call-ID",
        help_text="Optional. It seeds the weighted order of equal-priority trunks; without "
        "it the order is seeded by caller and callee.",
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

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        try:
            data["tenant"] = simulation_tenant(
                user=self.user, source_ip=data.get("source_ip"), tenant=data.get("tenant")
            )
        except SimulationRefused as exc:
            raise forms.ValidationError(str(exc)) from None
        return data

    def call_request(self) -> CallRequest:
        data = self.cleaned_data
        return CallRequest(
            callee=data["callee"],
            caller=data["caller"],
            source_ip=data["source_ip"] or None,
            tenant=data["tenant"].slug if data.get("tenant") else None,
            call_id=data["call_id"],
        )


def simulator_url(**params: str) -> str:
    query = {name: value for name, value in params.items() if value}
    url = reverse("ops:simulator")
    return f"{url}?{urlencode(query)}" if query else url
