"""CSV import and export of dial prefixes in the admin (a mixin for DialPrefixAdmin).

The same code as the commands (routing.importing, routing.exporting): the same
checks, every bad row listed with its line and column, one transaction. The
tenant choice is scoped like everything else (tenants.scoping): an operator
imports into and exports from their own tenant only.
"""

from __future__ import annotations

import csv
import io

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import slugify

from routing.exporting import ExportError, export_rows
from routing.importing import COLUMNS, ImportFailed, import_prefixes
from routing.models import RoutingPlan
from tenants.scoping import scope_queryset

SHOWN_ERRORS = 500


class PlanChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: RoutingPlan) -> str:
        return f"{obj.tenant} / {obj.name}"


class PlanChoiceForm(forms.Form):
    plan = PlanChoice(queryset=RoutingPlan.objects.none(), label="Routing plan")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        plans = scope_queryset(RoutingPlan.objects.select_related("tenant"), user)
        self.fields["plan"].queryset = plans.order_by("tenant__name", "name")
        if len(plans) == 1:
            self.fields["plan"].initial = plans[0]


class PrefixImportForm(PlanChoiceForm):
    file = forms.FileField(help_text="UTF-8 CSV with a header row (see the columns below).")
    replace = forms.BooleanField(
        required=False,
        help_text="Make the plan's table exactly this file: prefixes not in it are deleted.",
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows):
    writer = csv.writer(_Echo(), lineterminator="\n")
    for row in rows:
        yield writer.writerow(row)


class PrefixImportAdminMixin:
    """Adds import/ and export/ pages and their buttons to the dial prefix change list."""

    change_list_template = "admin/routing/dialprefix/change_list.html"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="{}_{}_import".format(*info),
            ),
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="{}_{}_export".format(*info),
            ),
            *super().get_urls(),
        ]

    def import_view(self, request):
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = PrefixImportForm(request.POST or None, request.FILES or None, user=request.user)
        failed: ImportFailed | None = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if data["replace"] and not self.has_delete_permission(request):
                form.add_error("replace", "Replacing deletes prefixes; you may not delete them.")
            else:
                upload = data["file"]
                try:
                    result = import_prefixes(
                        lambda: io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline=""),
                        tenant=data["plan"].tenant,
                        plan=data["plan"],
                        replace=data["replace"],
                        source=upload.name,
                        user=request.user,
                    )
                except ImportFailed as exc:
                    failed = exc
                else:
                    self.message_user(
                        request,
                        f"Imported {upload.name} into {data['plan'].tenant} / {data['plan']}: "
                        f"{result.summary()}.",
                        messages.SUCCESS,
                    )
                    opts = self.opts
                    return redirect(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        errors = failed.errors if failed else []
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import dial prefixes from CSV",
            "form": form,
            "columns": COLUMNS,
            "errors": errors[:SHOWN_ERRORS],
            "error_count": len(errors) + (failed.more if failed else 0),
        }
        return TemplateResponse(request, "admin/routing/dialprefix/import.html", context)

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PlanChoiceForm(request.GET or None, user=request.user)
        if form.is_valid():
            plan = form.cleaned_data["plan"]
            tenant = plan.tenant
            try:
                rows = export_rows(tenant, plan)
                first = next(rows)  # runs the name check before the response starts
            except ExportError as exc:
                form.add_error(None, str(exc))
            else:
                response = StreamingHttpResponse(
                    _csv_lines(_chain(first, rows)),
                    content_type="text/csv; charset=utf-8",
                )
                name = f"{tenant.slug}-{slugify(plan.name)}.csv"
                response["Content-Disposition"] = f'attachment; filename="{name}"'
                return response
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Export dial prefixes as CSV",
            "form": form,
        }
        return TemplateResponse(request, "admin/routing/dialprefix/export.html", context)


def _chain(first, rest):
    yield first
    yield from rest
