"""Admin of blocklists: lists with their entries inline (small lists) or imported.

A list's row (name, kind, customer, SIP code and reason, active) is edited here; its
entries inline when it has at most INLINE_ENTRIES of them, else on the *Blocklist
entries* page (filtered by list, searchable) and through *Import entries* (the same
code as `manage.py import_blocklist`). Every write goes through blocklists.services,
which tells every process. Tenant-scoped like the rest (TenantScopedMixin): the list,
customer and tenant choices are the user's own.
"""

from __future__ import annotations

import io

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from blocklists import services
from blocklists.importing import ImportFailed, import_entries
from blocklists.models import Blocklist, BlocklistEntry
from ops.admin.imports import SHOWN_ERRORS
from ops.admin.scoping import TenantScopedAdmin, TenantScopedMixin
from ops.history import TenantHistoryMixin
from tenants.scoping import scope_queryset

INLINE_ENTRIES = 200  # beyond this, entries are listed on their own page


class EntryInline(TenantScopedMixin, admin.TabularInline):
    model = BlocklistEntry
    fields = ["value", "match"]
    extra = 1


class BlocklistImportForm(forms.Form):
    blocklist = forms.ModelChoiceField(queryset=Blocklist.objects.none(), label="Blocklist")
    file = forms.FileField(
        help_text="One value per line (a prefix ends with *; a source list takes networks), "
        "or CSV with a 'value' column and optionally 'match' (exact or prefix)."
    )
    replace = forms.BooleanField(
        required=False, help_text="Make the list exactly this file: entries not in it are deleted."
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        lists = scope_queryset(Blocklist.objects.select_related("tenant"), user)
        self.fields["blocklist"].queryset = lists.order_by("tenant__name", "name")


@admin.register(Blocklist)
class BlocklistAdmin(TenantScopedMixin, TenantHistoryMixin, SimpleHistoryAdmin):
    list_display = [
        "name",
        "tenant",
        "kind",
        "customer",
        "reply",
        "entries_count",
        "is_active",
        "entries_link",
    ]
    list_filter = ["tenant", "kind", "is_active"]
    search_fields = ["name", "description"]
    list_select_related = ["tenant", "customer"]
    fields = [
        "tenant",
        "name",
        "kind",
        "customer",
        "reply_code",
        "reply_reason",
        "is_active",
        "description",
        "entries_count",
    ]
    readonly_fields = ["entries_count"]
    change_list_template = "admin/blocklists/blocklist/change_list.html"

    def get_inlines(self, request, obj):
        if obj is not None and obj.entries_count > INLINE_ENTRIES:
            return []  # a page of a million rows helps nobody: see the entries page
        return [EntryInline]

    @admin.display(description="Answer")
    def reply(self, obj: Blocklist) -> str:
        return f"{obj.reply_code} {obj.reply_reason}"

    @admin.display(description="Entries")
    def entries_link(self, obj: Blocklist) -> str:
        url = reverse("admin:blocklists_blocklistentry_changelist") + f"?list__id__exact={obj.pk}"
        return format_html('<a href="{}">view</a>', url)

    # --- Writes go through the services (they tell every process) -----------------------

    def save_model(self, request, obj, form, change) -> None:
        services.save_list(user=request.user, blocklist=obj)

    def delete_model(self, request, obj) -> None:
        services.delete_list(user=request.user, blocklist=obj)

    def delete_queryset(self, request, queryset) -> None:
        for blocklist in queryset:
            services.delete_list(user=request.user, blocklist=blocklist)

    def save_formset(self, request, form, formset, change) -> None:
        rows = formset.save(commit=False)
        for row in formset.deleted_objects:
            services.delete_entry(user=request.user, entry=row)
        for row in rows:
            services.save_entry(user=request.user, entry=row)

    # --- The import page ----------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="blocklists_blocklist_import",
            ),
            *super().get_urls(),
        ]

    def may_import(self, request) -> bool:
        return request.user.has_perm("blocklists.add_blocklistentry")

    def changelist_view(self, request, extra_context=None):
        extra = {"may_import": self.may_import(request), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def import_view(self, request):
        if not self.may_import(request):
            raise PermissionDenied
        initial = {}
        if request.GET.get("list", "").isdigit():
            initial["blocklist"] = request.GET["list"]
        form = BlocklistImportForm(
            request.POST or None, request.FILES or None, user=request.user, initial=initial
        )
        failed: ImportFailed | None = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            if data["replace"] and not request.user.has_perm("blocklists.delete_blocklistentry"):
                form.add_error("replace", "Replacing deletes entries; you may not delete them.")
            else:
                upload, blocklist = data["file"], data["blocklist"]
                try:
                    result = import_entries(
                        lambda: io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline=""),
                        blocklist=blocklist,
                        replace=data["replace"],
                        user=request.user,
                        source=upload.name,
                    )
                except ImportFailed as exc:
                    failed = exc
                except UnicodeDecodeError:
                    form.add_error("file", "The file is not UTF-8.")
                else:
                    self.message_user(
                        request,
                        f"Imported {upload.name} into {blocklist.name}: {result.summary()}.",
                        messages.SUCCESS,
                    )
                    return redirect("admin:blocklists_blocklist_changelist")
        errors = failed.errors if failed else []
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import blocklist entries",
            "form": form,
            "errors": errors[:SHOWN_ERRORS],
            "error_count": len(errors) + (failed.more if failed else 0),
        }
        return TemplateResponse(request, "admin/blocklists/blocklist/import.html", context)


@admin.register(BlocklistEntry)
class BlocklistEntryAdmin(TenantScopedAdmin):
    list_display = ["value", "match", "list"]
    # Only lists that the (scoped) entries belong to: never another tenant's list name.
    list_filter = [("list", admin.RelatedOnlyFieldListFilter), "match"]
    search_fields = ["value"]
    list_select_related = ["list"]
    fields = ["list", "value", "match"]
    show_full_result_count = False  # no COUNT(*) over a million rows per page

    def save_model(self, request, obj, form, change) -> None:
        services.save_entry(user=request.user, entry=obj)

    def delete_model(self, request, obj) -> None:
        services.delete_entry(user=request.user, entry=obj)

    def delete_queryset(self, request, queryset) -> None:
        for entry in queryset:
            services.delete_entry(user=request.user, entry=entry)
