"""Admin writes go through routing.services: the same checks as the REST API and imports.

The admin's forms validate as usual (field errors next to the field); saving, inline
rows included, is then the services' job, so the tenant rule and the post-save
check hold for the admin exactly as for every other writer.
"""

from __future__ import annotations

from django.contrib import messages

from routing import services
from routing.models import RouteTarget


class ServiceWritesMixin:
    """For the route-table ModelAdmins: save and delete rows and inline rows via services."""

    def save_model(self, request, obj, form, change) -> None:
        services.save_row(user=request.user, row=obj)

    def delete_model(self, request, obj) -> None:
        services.delete_row(user=request.user, row=obj)

    def save_formset(self, request, form, formset, change) -> None:
        rows = formset.save(commit=False)  # fills new/changed/deleted_objects for the log
        for row in formset.deleted_objects:
            services.delete_row(user=request.user, row=row)
        for row in rows:
            services.save_row(user=request.user, row=row)
        formset.save_m2m()


class RouteWritesMixin(ServiceWritesMixin):
    """For the route admin: a route and its targets are saved together by save_route()."""

    def save_model(self, request, obj, form, change) -> None:
        pass  # saved with its targets in save_related(), in one transaction

    def save_related(self, request, form, formsets, change) -> None:
        targets = next(f for f in formsets if f.model is RouteTarget)
        targets.save(commit=False)  # fills new/changed/deleted_objects for the log
        specs = [
            services.TargetSpec(
                trunk_id=row.cleaned_data["trunk"].pk,
                priority=row.cleaned_data["priority"],
                weight=row.cleaned_data["weight"],
                schedule_id=getattr(row.cleaned_data.get("schedule"), "pk", None),
            )
            for row in targets.forms
            if row.cleaned_data and not row.cleaned_data.get("DELETE")
        ]
        warnings = services.save_route(user=request.user, route=form.instance, targets=specs)
        form.save_m2m()
        for formset in formsets:
            if formset is not targets:
                self.save_formset(request, form, formset, change)
        for warning in warnings:
            messages.warning(request, warning)
