"""Admin for the route table: carriers with their trunks, prefixes with their targets.

All of it is tenant-scoped through ops.admin.scoping.TenantScopedMixin.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.db.models import Count
from simple_history.admin import SimpleHistoryAdmin

from ops.admin.help import OperatorHelpMixin
from ops.admin.imports import PrefixImportAdminMixin
from ops.admin.scoping import TenantScopedMixin
from ops.admin.writes import RouteWritesMixin, ServiceWritesMixin
from ops.history import TenantHistoryMixin
from routing import services
from routing.models import Carrier, DialPrefix, RouteTarget, Trunk

TRUNK_FIELDSETS = (
    (None, {"fields": ["name", "host", "port", "transport", "is_active"]}),
    (
        "Number and caller-ID",
        {"fields": ["tech_prefix", "strip_digits", "from_display", "from_uri", "rewrite_to"]},
    ),
    (
        "Kamailio branch",
        {
            "classes": ["collapse"],
            "fields": [
                "outbound_proxy",
                "socket",
                "path",
                "extra_headers",
                "branch_flags",
                "fr_timer",
                "fr_inv_timer",
            ],
        },
    ),
)


def _set_active(modeladmin, request, queryset, active: bool) -> None:
    count = services.set_active(user=request.user, queryset=queryset, active=active)
    modeladmin.message_user(
        request,
        f"{'Enabled' if active else 'Disabled'} {count} "
        f"{queryset.model._meta.verbose_name_plural}.",
        messages.SUCCESS,
    )


@admin.action(description="Enable selected")
def enable_selected(modeladmin, request, queryset):
    _set_active(modeladmin, request, queryset, True)


@admin.action(description="Disable selected")
def disable_selected(modeladmin, request, queryset):
    _set_active(modeladmin, request, queryset, False)


class TrunkInline(OperatorHelpMixin, TenantScopedMixin, admin.StackedInline):
    model = Trunk
    extra = 0
    fieldsets = TRUNK_FIELDSETS
    show_change_link = True


@admin.register(Carrier)
class CarrierAdmin(
    ServiceWritesMixin,
    OperatorHelpMixin,
    TenantScopedMixin,
    TenantHistoryMixin,
    SimpleHistoryAdmin,
):
    list_display = ["name", "tenant", "is_active", "trunk_summary"]
    list_filter = ["tenant", "is_active"]
    search_fields = ["name", "description"]
    list_select_related = ["tenant"]
    actions = [enable_selected, disable_selected]
    inlines = [TrunkInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(trunk_total=Count("trunks"))
            .prefetch_related("trunks")
        )

    @admin.display(description="Trunks")
    def trunk_summary(self, obj: Carrier) -> str:
        trunks = list(obj.trunks.all())
        if not trunks:
            return "no trunk yet"
        up = sum(t.is_active for t in trunks)
        names = ", ".join(
            f"{t.name} ({t.host})" if t.is_active else f"{t.name} (off)" for t in trunks
        )
        return f"{up}/{len(trunks)} active: {names}"


@admin.register(Trunk)
class TrunkAdmin(
    ServiceWritesMixin, OperatorHelpMixin, TenantScopedMixin, TenantHistoryMixin, SimpleHistoryAdmin
):
    list_display = ["__str__", "host", "port", "transport", "is_active", "carrier_active"]
    list_filter = [
        "carrier__tenant",
        ("carrier", admin.RelatedOnlyFieldListFilter),
        "transport",
        "is_active",
    ]
    search_fields = ["name", "host", "carrier__name"]
    list_select_related = ["carrier"]
    autocomplete_fields = ["carrier"]
    fieldsets = ((None, {"fields": ["carrier"]}), *TRUNK_FIELDSETS)
    actions = [enable_selected, disable_selected]

    @admin.display(boolean=True, description="Carrier active")
    def carrier_active(self, obj: Trunk) -> bool:
        return obj.carrier.is_active


class RouteTargetInline(OperatorHelpMixin, TenantScopedMixin, admin.TabularInline):
    model = RouteTarget
    extra = 0
    autocomplete_fields = ["trunk"]
    fields = ["trunk", "priority", "weight"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "trunk" and isinstance(formfield.widget, RelatedFieldWidgetWrapper):
            # A row's "Delete?" box removes the target; an icon beside it that deletes
            # (or edits) the trunk itself, for every route using it, is a trap. Adding
            # a trunk from here stays: it only offers a new choice for this row.
            formfield.widget.can_change_related = False
            formfield.widget.can_delete_related = False
            formfield.widget.can_view_related = False
        return formfield


@admin.register(DialPrefix)
class DialPrefixAdmin(
    RouteWritesMixin,
    PrefixImportAdminMixin,
    OperatorHelpMixin,
    TenantScopedMixin,
    TenantHistoryMixin,
    SimpleHistoryAdmin,
):
    list_display = [
        "prefix_display",
        "description",
        "tenant",
        "action",
        "routing_mode",
        "target_summary",
        "length_bounds",
        "is_active",
    ]
    list_display_links = ["prefix_display"]
    list_filter = ["tenant", "action", "routing_mode", "is_active"]
    search_fields = ["prefix", "description"]
    list_select_related = ["tenant"]
    # A wholesale table has a million rows: do not count them on every page view.
    show_full_result_count = False
    actions = [enable_selected, disable_selected]
    inlines = [RouteTargetInline]
    fieldsets = (
        (None, {"fields": ["tenant", "prefix", "description", "action", "is_active"]}),
        ("Routing", {"fields": ["routing_mode", "min_length", "max_length", "is_final"]}),
        ("Reject", {"fields": ["reject_code", "reject_reason"]}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("targets__trunk__carrier")

    @admin.display(description="Prefix", ordering="prefix")
    def prefix_display(self, obj: DialPrefix) -> str:
        return str(obj)

    @admin.display(description="Targets (in priority order)")
    def target_summary(self, obj: DialPrefix) -> str:
        if obj.action == "reject":
            return f"reject {obj.reject_code} {obj.reject_reason}".strip()
        if obj.action == "location":
            return "local users"
        targets = sorted(obj.targets.all(), key=lambda t: (t.priority, -t.weight))
        if not targets:
            return "no target: calls get 503"
        return " → ".join(
            f"{t.trunk} (p{t.priority}, w{t.weight})"
            + ("" if t.trunk.is_active and t.trunk.carrier.is_active else " [off]")
            for t in targets
        )

    @admin.display(description="Length")
    def length_bounds(self, obj: DialPrefix) -> str:
        if obj.min_length is None and obj.max_length is None:
            return "any"
        return f"{obj.min_length or '…'}–{obj.max_length or '…'}"
