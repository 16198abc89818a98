"""Admin for the route table: carriers with their trunks, prefixes with their targets.

All of it is tenant-scoped through ops.admin.scoping.TenantScopedMixin.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST
from simple_history.admin import SimpleHistoryAdmin

from ops.admin.help import OperatorHelpMixin
from ops.admin.imports import PrefixImportAdminMixin
from ops.admin.prefix_list import PrefixListMixin
from ops.admin.scoping import TenantScopedMixin
from ops.admin.versions import PlanVersionsMixin
from ops.admin.writes import RouteWritesMixin, ServiceWritesMixin
from ops.history import RouteHistoryMixin, TenantHistoryMixin
from routing import health, services
from routing.models import (
    Carrier,
    Customer,
    CustomerSource,
    DialPrefix,
    HealthOverride,
    RouteTarget,
    RoutingPlan,
    Schedule,
    Trunk,
    TrunkHealth,
)
from tenants.scoping import scope_queryset

TRUNK_FIELDSETS = (
    (None, {"fields": ["name", "host", "port", "transport", "is_active"]}),
    (
        "Number and caller-ID",
        {"fields": ["tech_prefix", "strip_digits", "from_display", "from_uri", "rewrite_to"]},
    ),
    (
        "Number translation",
        {
            "classes": ["collapse"],
            "description": "How this carrier wants the called and calling numbers: the "
            "format first, then the rules, then the digits stripped and the tech prefix "
            "above. See docs/translation.md.",
            "fields": [
                "number_format",
                "country_code",
                "national_prefix",
                "international_prefix",
                "outbound_callee_rules",
                "outbound_caller_rules",
            ],
        },
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
                "failover_codes",
            ],
        },
    ),
    (
        "Capacity",
        {
            "classes": ["collapse"],
            "description": "Caps Kamailio enforces per trunk; a call beyond one goes to the "
            "next route.",
            "fields": ["max_calls", "max_cps"],
        },
    ),
    (
        "Health",
        {
            "classes": ["collapse"],
            "description": "When the trunk's call outcomes take it out of routing: failures "
            "are 408 and 5xx final replies; 4xx and 6xx are the callee's answer.",
            "fields": [
                "health_window",
                "health_min_attempts",
                "health_failure_ratio",
                "health_consecutive_failures",
                "health_cooldown",
            ],
        },
    ),
)
HEALTH_HISTORY_ROWS = 50


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
    list_display = [
        "__str__",
        "host",
        "port",
        "transport",
        "is_active",
        "carrier_active",
        "health_status",
    ]
    list_filter = [
        "carrier__tenant",
        ("carrier", admin.RelatedOnlyFieldListFilter),
        "transport",
        "is_active",
    ]
    search_fields = ["name", "host", "carrier__name"]
    list_select_related = ["carrier", "health"]
    autocomplete_fields = ["carrier"]
    fieldsets = ((None, {"fields": ["carrier"]}), *TRUNK_FIELDSETS)
    actions = [enable_selected, disable_selected]

    @admin.display(boolean=True, description="Carrier active")
    def carrier_active(self, obj: Trunk) -> bool:
        return obj.carrier.is_active

    @admin.display(description="Health")
    def health_status(self, obj: Trunk) -> str:
        return health_label(_health_of(obj))

    # --- Current health, its history and the operator's override (change form only) ---

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return (*fieldsets, ("Current health", {"fields": ["health_now", "health_history"]}))

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "health_now", "health_history"] if obj is not None else readonly

    @admin.display(description="Now")
    def health_now(self, obj: Trunk) -> str:
        row = _health_of(obj)
        detail = ""
        if row is not None and row.state == "unhealthy":
            detail = f" since {_clock(row.since)}: {row.reason}"
        buttons = format_html_join(
            " ",
            '<button type="submit" class="button" form="trunk-health" name="health_mode" '
            'value="{}">{}</button>',
            OVERRIDE_BUTTONS,
        )
        # The controls belong to the form "trunk-health" (its change_form.html), not the
        # trunk's form: saving the trunk never overrides, an override never saves it.
        return format_html(
            "<strong>{}</strong>{}<br>"
            '<input type="text" form="trunk-health" name="health_reason" maxlength="150" '
            'size="40" placeholder="Why (kept in the history)" '
            'aria-label="Reason for the override"> {}',
            health_label(row),
            detail,
            buttons,
        )

    @admin.display(description="History")
    def health_history(self, obj: Trunk) -> str:
        events = obj.health_events.select_related("user")[:HEALTH_HISTORY_ROWS]
        if not events:
            return "No change yet: the trunk has always been healthy."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _clock(event.at, "%Y-%m-%d %H:%M:%S"),
                    event.get_state_display(),
                    event.get_override_display(),
                    event.reason,
                    event.user.get_username() if event.user else "(outcomes)",
                )
                for event in events
            ),
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>State</th><th>Override</th><th>Why</th>"
            "<th>By</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/health/",
                self.admin_site.admin_view(require_POST(self.health_view)),
                name="routing_trunk_health",
            ),
            *super().get_urls(),
        ]

    def health_view(self, request, object_id: str):
        """The override buttons: through routing.health.override, written to the history."""
        trunk = self.get_object(request, unquote(object_id))  # scoped: another tenant's is None
        if trunk is None:
            raise Http404("No such trunk.")
        if not self.has_change_permission(request, trunk):
            raise PermissionDenied
        mode = request.POST.get("health_mode", "")
        if mode not in HealthOverride.values:
            messages.error(request, "Choose Automatic, Force in service or Force out of service.")
        else:
            reason = request.POST.get("health_reason", "").strip()[:150]
            health.override(trunk, mode, request.user, reason)
            messages.success(request, f"{trunk}: {health.OVERRIDE_REASONS[mode]}.")
        return HttpResponseRedirect(reverse("admin:routing_trunk_change", args=[trunk.pk]))


OVERRIDE_BUTTONS = (
    (HealthOverride.AUTO.value, "Automatic"),
    (HealthOverride.UP.value, "Force in service"),
    (HealthOverride.DOWN.value, "Force out of service"),
)


def _health_of(trunk: Trunk) -> TrunkHealth | None:
    try:
        return trunk.health
    except TrunkHealth.DoesNotExist:
        return None


def _clock(value, fmt: str = "%H:%M") -> str:
    return timezone.localtime(value).strftime(fmt) if value else ""


def health_label(row: TrunkHealth | None) -> str:
    """Healthy / Unhealthy until hh:mm / Half-open / Forced up / Forced down."""
    now = health.status(row, timezone.now())
    if now == "unhealthy" and row.until is not None:
        return f"Unhealthy until {_clock(row.until)}"
    return HEALTH_LABELS[now]


HEALTH_LABELS = {
    "healthy": "Healthy",
    "unhealthy": "Unhealthy",
    "half_open": "Half-open",
    "forced_up": "Forced up",
    "forced_down": "Forced down",
}


class AddOnlyRelatedMixin:
    """Foreign keys named in `add_only_related` get only the "add another" icon.

    An icon beside a choice that deletes (or edits) the chosen row itself (a trunk
    used by every route, a plan holding a whole table) is a trap next to a form's
    own Delete box. Adding from here stays: it only offers a new choice.
    """

    add_only_related: tuple[str, ...] = ()

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name in self.add_only_related and isinstance(
            getattr(formfield, "widget", None), RelatedFieldWidgetWrapper
        ):
            formfield.widget.can_change_related = False
            formfield.widget.can_delete_related = False
            formfield.widget.can_view_related = False
        return formfield


class RouteTargetInline(
    AddOnlyRelatedMixin, OperatorHelpMixin, TenantScopedMixin, admin.TabularInline
):
    model = RouteTarget
    extra = 0
    autocomplete_fields = ["trunk"]
    fields = ["trunk", "priority", "weight", "schedule"]
    add_only_related = ("trunk", "schedule")


@admin.register(DialPrefix)
class DialPrefixAdmin(
    PrefixListMixin,  # search by number, carrier/trunk filters, targets column, page size
    AddOnlyRelatedMixin,
    RouteWritesMixin,
    PrefixImportAdminMixin,
    OperatorHelpMixin,
    TenantScopedMixin,
    RouteHistoryMixin,
    TenantHistoryMixin,
    SimpleHistoryAdmin,
):
    # Action, strategy and routing mode read in the targets column (ops.admin.prefix_list).
    list_display = [
        "prefix_display",
        "description",
        "tenant",
        "plan",
        "rules",
        "target_summary",
        "length_bounds",
        "is_active",
    ]
    list_display_links = ["prefix_display"]
    list_filter = [
        "tenant",
        ("plan", admin.RelatedOnlyFieldListFilter),
        "action",
        "routing_mode",
        ("schedule", admin.RelatedOnlyFieldListFilter),
        "is_active",
    ]
    search_fields = ["prefix", "caller_prefix", "caller_pattern", "description"]
    list_select_related = ["tenant", "plan", "schedule"]
    # A wholesale table has a million rows: do not count them on every page view.
    show_full_result_count = False
    actions = [enable_selected, disable_selected]
    inlines = [RouteTargetInline]
    add_only_related = ("plan", "schedule")
    fieldsets = (
        (None, {"fields": ["tenant", "plan", "prefix", "description", "action", "is_active"]}),
        (
            "Rules",
            {
                "fields": ["caller_prefix", "caller_pattern", "schedule"],
                "description": "A prefix can have several routes: one per caller prefix or "
                "pattern and schedule. Among those that match a call, the longer caller prefix "
                "wins, then a caller pattern, then a scheduled route in force over the "
                "unscheduled one (the fallback).",
            },
        ),
        ("Routing", {"fields": ["routing_mode", "min_length", "max_length", "is_final"]}),
        (
            "Least cost",
            {
                "fields": [
                    "strategy",
                    "margin_percent",
                    "margin_absolute",
                    "max_cost",
                    "lcr_code",
                ],
                "description": "Least-cost strategies order the targets (or every trunk of "
                "the tenant) by their carrier's rate for the number; empty margins take the "
                "plan's.",
            },
        ),
        ("Reject", {"fields": ["reject_code", "reject_reason"]}),
    )

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        plans = list(scope_queryset(RoutingPlan.objects.all(), request.user)[:2])
        if "plan" not in initial and len(plans) == 1:
            initial["plan"] = plans[0].pk  # the only plan the user has
        return initial

    @admin.display(description="Prefix", ordering="prefix")
    def prefix_display(self, obj: DialPrefix) -> str:
        return str(obj)

    @admin.display(description="Rules")
    def rules(self, obj: DialPrefix) -> str:
        parts = []
        if obj.caller_prefix:
            parts.append(f"caller {obj.caller_prefix}…")
        if obj.caller_pattern:
            parts.append(f"caller ~{obj.caller_pattern}")
        if obj.schedule_id:
            parts.append(f"when {obj.schedule}")
        return ", ".join(parts) or "any caller, always"

    @admin.display(description="Length")
    def length_bounds(self, obj: DialPrefix) -> str:
        if obj.min_length is None and obj.max_length is None:
            return "any"
        return f"{obj.min_length or '…'}–{obj.max_length or '…'}"


@admin.register(Schedule)
class ScheduleAdmin(
    ServiceWritesMixin,
    OperatorHelpMixin,
    TenantScopedMixin,
    TenantHistoryMixin,
    SimpleHistoryAdmin,
):
    list_display = ["name", "tenant", "timezone", "periods", "valid_from", "valid_until", "usage"]
    list_filter = ["tenant", "timezone"]
    search_fields = ["name", "periods", "description"]
    list_select_related = ["tenant"]
    fieldsets = (
        (None, {"fields": ["tenant", "name", "description"]}),
        ("When", {"fields": ["timezone", "periods", "valid_from", "valid_until"]}),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                route_total=Count("routes", distinct=True),
                target_total=Count("targets", distinct=True),
            )
        )

    @admin.display(description="Used by")
    def usage(self, obj: Schedule) -> str:
        return f"{obj.route_total} routes, {obj.target_total} targets"


class CustomerSourceFormSet(BaseInlineFormSet):
    """Checks the customer's recognition as a whole (routing.services.check_customer):
    at least one rule, sources within the tenant's networks, no tie with another
    customer. Errors show above the sources, before anything is saved."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors) or not self.instance.tenant_id or not self.instance.plan_id:
            return
        try:
            services.check_customer(self.instance, source_specs(self))
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None
        except services.SourcesInvalid as exc:
            raise ValidationError(
                [f"Source {n + 1}: {' '.join(e.messages)}" for n, e in exc.errors.items()]
            ) from None


def source_specs(formset) -> list[services.SourceSpec]:
    return [
        services.SourceSpec(row.cleaned_data["network"], row.cleaned_data.get("port"))
        for row in formset.forms
        if row.cleaned_data and not row.cleaned_data.get("DELETE")
    ]


class CustomerSourceInline(OperatorHelpMixin, TenantScopedMixin, admin.TabularInline):
    model = CustomerSource
    formset = CustomerSourceFormSet
    extra = 0
    fields = ["network", "port"]


@admin.register(RoutingPlan)
class RoutingPlanAdmin(
    PlanVersionsMixin,
    ServiceWritesMixin,
    OperatorHelpMixin,
    TenantScopedMixin,
    TenantHistoryMixin,
    SimpleHistoryAdmin,
):
    list_display = [
        "name",
        "tenant",
        "prefix_count",
        "customer_list",
        "versions_link",
        "description",
    ]
    list_filter = ["tenant"]
    search_fields = ["name", "description"]
    list_select_related = ["tenant"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(prefix_total=Count("prefixes", distinct=True))
            .prefetch_related("customers")
        )

    @admin.display(description="Routes", ordering="prefix_total")
    def prefix_count(self, obj: RoutingPlan) -> int:
        return obj.prefix_total

    @admin.display(description="Customers")
    def customer_list(self, obj: RoutingPlan) -> str:
        return ", ".join(c.name for c in obj.customers.all()) or "none yet"


@admin.register(Customer)
class CustomerAdmin(
    AddOnlyRelatedMixin,
    ServiceWritesMixin,
    OperatorHelpMixin,
    TenantScopedMixin,
    TenantHistoryMixin,
    SimpleHistoryAdmin,
):
    list_display = ["name", "tenant", "plan", "recognised_by", "is_active"]
    list_filter = ["tenant", ("plan", admin.RelatedOnlyFieldListFilter), "is_active"]
    search_fields = ["name", "account", "tech_prefix", "description"]
    list_select_related = ["tenant", "plan"]
    inlines = [CustomerSourceInline]
    add_only_related = ("plan",)
    fieldsets = (
        (None, {"fields": ["tenant", "name", "plan", "is_active", "description"]}),
        ("How its calls are recognised", {"fields": ["is_default", "tech_prefix", "account"]}),
        (
            "Number translation",
            {
                "classes": ["collapse"],
                "description": "How this customer dials: its callee and caller become E.164 "
                "(e.g. 0612345678 → 33612345678 with country 33 and national prefix 0), then "
                "its rules apply, before the route is matched. Leave it all empty to route "
                "numbers as they are dialled. See docs/translation.md.",
                "fields": [
                    "country_code",
                    "national_prefix",
                    "international_prefix",
                    "inbound_callee_rules",
                    "inbound_caller_rules",
                ],
            },
        ),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("sources")

    @admin.display(description="Recognised by")
    def recognised_by(self, obj: Customer) -> str:
        if obj.is_default:
            return "default: the calls no other customer's rules match"
        rules = [str(source) for source in obj.sources.all()]
        if obj.tech_prefix:
            rules.append(f"tech prefix {obj.tech_prefix}")
        if obj.account:
            rules.append(f"account {obj.account}")
        return ", ".join(rules) or "no rule: matches nothing"

    def save_model(self, request, obj, form, change) -> None:
        pass  # saved with its sources in save_related(), in one transaction

    def save_related(self, request, form, formsets, change) -> None:
        sources = next(f for f in formsets if f.model is CustomerSource)
        sources.save(commit=False)  # fills new/changed/deleted_objects for the log
        services.save_customer(
            user=request.user, customer=form.instance, sources=source_specs(sources)
        )
        form.save_m2m()
