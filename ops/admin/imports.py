"""CSV import and export of dial prefixes in the admin (a mixin for DialPrefixAdmin).

The same code as the commands (routing.importing, routing.exporting): the same
checks, every bad row listed with its line and column, one transaction. The
tenant choice is scoped like everything else (tenants.scoping): an operator
imports into and exports from their own tenant only.

A replace takes two submits. The first checks the file and shows the preview (how
many routes it deletes, changes, adds and keeps; nothing written); the second, the
confirm button, imports it. The uploaded file is kept server-side between the two
rather than uploaded again: a million-row file is tens of megabytes, and the
operator confirms what was previewed, not whatever file they pick the second time.
It goes to a private temporary directory under a random token that only the
uploader's session knows (`PENDING_KEY`); the confirm takes the plan from the
session, not the form; the file is removed once imported, and any left behind
(a preview never confirmed) after `PENDING_MAX_AGE`. Several web servers need that
directory shared (or sticky sessions); one server, as deployed, does not.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import slugify

from ops.admin.bulk import describe_filters, filtered_routes, list_filters
from ops.admin.versions import versions_url
from routing.exporting import ExportError, export_rows
from routing.importing import (
    COLUMNS,
    ImportFailed,
    ImportPreview,
    import_prefixes,
    preview_import,
    where_it_goes,
)
from routing.models import RoutingPlan
from tenants.scoping import scope_queryset

SHOWN_ERRORS = 500
PENDING_KEY = "routing_prefix_imports"  # session: token -> the previewed upload
PENDING_MAX_AGE = 3600  # seconds a previewed file waits for its confirmation


def pending_directory() -> Path:
    """Where previewed uploads wait for their confirmation (mode 0700, files 0600)."""
    directory = Path(tempfile.gettempdir()) / "routing-import-previews"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def _keep_upload(upload) -> tuple[str, Path]:
    """Copy the upload to a new private file named by a random token; drop stale ones."""
    directory = pending_directory()
    now = time.time()
    for old in directory.glob("*.csv"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > PENDING_MAX_AGE:
                old.unlink()
    token = secrets.token_urlsafe(24)
    target = directory / f"{token}.csv"
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        upload.seek(0)
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return token, target


def _pending_path(token: str) -> Path | None:
    if not token or not token.replace("-", "").replace("_", "").isalnum():
        return None
    found = pending_directory() / f"{token}.csv"
    return found if found.is_file() else None


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


class ConfirmReplaceForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput)


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
        if request.method == "POST" and "token" in request.POST:
            return self._confirm_replace(request)
        form = PrefixImportForm(request.POST or None, request.FILES or None, user=request.user)
        failed: ImportFailed | None = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            plan, upload = data["plan"], data["file"]
            if data["replace"] and not self.has_delete_permission(request):
                form.add_error("replace", "Replacing deletes prefixes; you may not delete them.")
            elif data["replace"]:
                token, kept = _keep_upload(upload)
                try:
                    preview = preview_import(
                        lambda: kept.open(encoding="utf-8-sig", newline=""),
                        tenant=plan.tenant,
                        plan=plan,
                        replace=True,
                        user=request.user,
                    )
                except ImportFailed as exc:
                    kept.unlink(missing_ok=True)
                    failed = exc
                else:
                    pending = request.session.get(PENDING_KEY, {})
                    pending[token] = {
                        "plan": plan.pk,
                        "name": upload.name,
                        "deleted": preview.deleted,
                    }
                    request.session[PENDING_KEY] = pending
                    return self._preview_page(request, preview, upload.name, token)
            else:
                try:
                    result = import_prefixes(
                        lambda: io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline=""),
                        tenant=plan.tenant,
                        plan=plan,
                        replace=False,
                        source=upload.name,
                        user=request.user,
                    )
                except ImportFailed as exc:
                    failed = exc
                else:
                    return self._imported(request, plan, upload.name, result)
        return self._import_page(request, form, failed)

    def _confirm_replace(self, request):
        """The second submit of a replace: import the file the preview was made of."""
        form = ConfirmReplaceForm(request.POST)
        pending = request.session.get(PENDING_KEY, {})
        token = form.data.get("token", "")
        entry = pending.get(token) if form.is_valid() else None
        kept = _pending_path(token) if entry else None
        plan = None
        if entry is not None:
            plans = scope_queryset(RoutingPlan.objects.select_related("tenant"), request.user)
            plan = plans.filter(pk=entry["plan"]).first()
        if kept is None or plan is None or not self.has_delete_permission(request):
            pending.pop(token, None)
            request.session[PENDING_KEY] = pending
            self.message_user(
                request,
                "That preview is no longer there (expired, or already imported): upload the "
                "file again.",
                messages.ERROR,
            )
            return redirect(request.path)
        failed: ImportFailed | None = None
        try:
            result = import_prefixes(
                lambda: kept.open(encoding="utf-8-sig", newline=""),
                tenant=plan.tenant,
                plan=plan,
                replace=True,
                source=entry["name"],
                user=request.user,
                expect_deleted=entry["deleted"],
            )
        except ImportFailed as exc:
            failed = exc
        finally:
            kept.unlink(missing_ok=True)
            pending.pop(token, None)
            request.session[PENDING_KEY] = pending
        if failed is None:
            return self._imported(request, plan, entry["name"], result)
        form = PrefixImportForm(initial={"plan": plan, "replace": True}, user=request.user)
        return self._import_page(request, form, failed)

    def _imported(self, request, plan: RoutingPlan, name: str, result):
        draft = " (its draft: publish it to make it live)" if plan.published_version else ""
        self.message_user(
            request,
            f"Imported {name} into {plan.tenant} / {plan}{draft}: {result.summary()}.",
            messages.SUCCESS,
        )
        opts = self.opts
        return redirect(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    def _context(self, request, title: str) -> dict:
        plans = scope_queryset(RoutingPlan.objects.select_related("tenant"), request.user)
        staged = [
            (plan, versions_url(plan))
            for plan in plans.filter(published_version__isnull=False).order_by("name")
        ]
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "columns": COLUMNS,
            "staged_plans": staged,
        }

    def _import_page(self, request, form, failed: ImportFailed | None):
        errors = failed.errors if failed else []
        context = {
            **self._context(request, "Import dial prefixes from CSV"),
            "form": form,
            "errors": errors[:SHOWN_ERRORS],
            "error_count": len(errors) + (failed.more if failed else 0),
        }
        return TemplateResponse(request, "admin/routing/dialprefix/import.html", context)

    def _preview_page(self, request, preview: ImportPreview, name: str, token: str):
        plan = preview.plan
        context = {
            **self._context(request, f"Replace plan {plan.name} with {name}?"),
            "preview": preview,
            "n": {
                name: f"{getattr(preview, name):,}"
                for name in ("rows", "deleted", "changed", "added", "kept")
            },
            "plan": plan,
            "file_name": name,
            "confirm_form": ConfirmReplaceForm(initial={"token": token}),
            "where": where_it_goes(plan),
            "versions_url": versions_url(plan) if preview.staged else "",
        }
        return TemplateResponse(request, "admin/routing/dialprefix/import_preview.html", context)

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PlanChoiceForm(request.GET if "plan" in request.GET else None, user=request.user)
        filters = list_filters(request.GET)
        if form.is_valid():
            plan = form.cleaned_data["plan"]
            tenant = plan.tenant
            try:
                # The list's filters and search, when the list's link carried them.
                routes = filtered_routes(self, request, request.GET) if filters else None
                rows = export_rows(tenant, plan, routes=routes)
                first = next(rows)  # runs the name check before the response starts
            except (ExportError, ValidationError) as exc:
                form.add_error(None, exc)
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
            "filters": describe_filters(request.GET),
            "filter_params": [(k, v) for k, values in filters.lists() for v in values],
        }
        return TemplateResponse(request, "admin/routing/dialprefix/export.html", context)


def _chain(first, rest):
    yield first
    yield from rest
