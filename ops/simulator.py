"""The route simulator: "where will this call go, and why?", answered by the real engine.

It calls routing.service.decide() like the HTTP endpoint and the EVAPI bridge do,
so the admin shows exactly what Kamailio would get. A tenant's operator decides
only against their own tenant's table: `OwnTenantTable` refuses to name or read
any other tenant, so giving another tenant's source IP yields "not one of your
networks", never that tenant's decision.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.urls import reverse
from django.utils.http import urlencode

from kamailio.rtjson import to_rtjson as rtjson_of
from routing.metrics import observe_decision
from routing.resolver import CallRequest, Decision, Route, RouteTable
from routing.rows import RouteEntry, TenantRef
from routing.service import decide, get_route_table
from tenants.models import Tenant
from tenants.networks import IPAddress
from tenants.scoping import EVERYTHING, user_scope

NOT_YOURS = "This source is not one of your networks."


class OwnTenantTable:
    """A RouteTable that answers for one tenant only and remembers if it refused another."""

    def __init__(self, inner: RouteTable, tenant_id: int) -> None:
        self.inner = inner
        self.tenant_id = tenant_id
        self.refused = False

    def _own(self, tenant: TenantRef | None) -> TenantRef | None:
        if tenant is not None and tenant.id != self.tenant_id:
            self.refused = True
            return None
        return tenant

    def tenant_by_source(self, address: IPAddress) -> tuple[TenantRef, str] | None:
        found = self.inner.tenant_by_source(address)
        if found is None or self._own(found[0]) is None:
            return None
        return found

    def tenant_by_slug(self, slug: str) -> TenantRef | None:
        return self._own(self.inner.tenant_by_slug(slug))

    def routes(self, tenant_id: int, candidates: list[str]) -> list[RouteEntry]:
        if tenant_id != self.tenant_id:  # unreachable through resolve(); a guard, not a path
            raise PermissionError("another tenant's route table")
        return self.inner.routes(tenant_id, candidates)


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
        self.scope = user_scope(user)
        tenants = Tenant.objects.all()
        if self.scope is not EVERYTHING:
            tenants = tenants.filter(pk=getattr(self.scope, "pk", None))
            self.fields["tenant"].empty_label = "(from the source IP, else my tenant)"
        self.fields["tenant"].queryset = tenants

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("source_ip") and data.get("tenant"):
            raise forms.ValidationError(
                "Give a source IP or a tenant, not both: with a source IP the tenant comes "
                "from its network."
            )
        if not data.get("source_ip") and not data.get("tenant"):
            if self.scope is EVERYTHING:
                raise forms.ValidationError("Give a source IP or pick a tenant.")
            data["tenant"] = self.scope
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


@dataclass
class TargetLine:
    """A route as the operator reads it: position, and why it is there."""

    position: int
    route: Route
    why: str


@dataclass
class Simulation:
    request: CallRequest
    decision: Decision | None = None
    refused: str = ""
    seconds: float = 0.0
    lines: list[TargetLine] = field(default_factory=list)
    rtjson: str = ""

    @property
    def milliseconds(self) -> float:
        return self.seconds * 1000


def simulate(request: CallRequest, *, user) -> Simulation:
    """Decide `request` with the live table as `user` may see it, and explain the answer."""
    scope = user_scope(user)
    if scope is None:
        raise PermissionError("this user operates no tenant")
    table = get_route_table()
    guard = None
    if scope is not EVERYTHING:
        guard = table = OwnTenantTable(table, scope.pk)
    started = time.perf_counter()
    decision = decide(request, table=table)
    seconds = time.perf_counter() - started
    observe_decision("simulator", str(decision.outcome), seconds)
    if guard is not None and guard.refused:
        return Simulation(request=request, refused=NOT_YOURS, seconds=seconds)
    return Simulation(
        request=request,
        decision=decision,
        seconds=seconds,
        lines=explain_routes(decision, seeded_by_call_id=bool(request.call_id)),
        rtjson=json.dumps(rtjson_of(decision), indent=2, ensure_ascii=False),
    )


def explain_routes(decision: Decision, *, seeded_by_call_id: bool) -> list[TargetLine]:
    """Why each route is where it is: its priority, and its weight among its peers."""
    lines = []
    for position, route in enumerate(decision.routes, start=1):
        peers = [r for r in decision.routes if r.priority == route.priority]
        if len(peers) == 1:
            why = f"priority {route.priority}: the only target at this priority"
        else:
            total = sum(r.weight for r in peers)
            seed = "this Call-ID" if seeded_by_call_id else "this caller and callee"
            why = (
                f"priority {route.priority}, weight {route.weight} of {total}: first at this "
                f"priority on about {route.weight / total:.0%} of calls; {seed} put it here"
            )
        if decision.routing == "parallel":
            why += " (parallel: rung together with the others)"
        elif position == 1:
            why += " (tried first)"
        lines.append(TargetLine(position=position, route=route, why=why))
    return lines


def sample_number(prefix: str, min_length: int | None, max_length: int | None) -> str:
    """A number that the prefix matches, to prefill the simulator from a prefix's page."""
    length = max(len(prefix), min_length or 0, min(11, max_length or 11))
    return prefix + "0" * (length - len(prefix))


def simulator_url(**params: str) -> str:
    query = {name: value for name, value in params.items() if value}
    url = reverse("ops:simulator")
    return f"{url}?{urlencode(query)}" if query else url
