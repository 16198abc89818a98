"""Admin of rate decks: vendor decks per carrier and sell decks per plan or customer,
listed with their state, rates shown, CSV import and export.

A deck is never edited: it is imported whole (the "Import rate deck" page, the same
code as `manage.py import_rates`) and deleted whole (rating.services.delete_deck,
which tells every process). Tenant-scoped like the rest (TenantScopedMixin); the
owner choices of the import list the user's own carriers, plans and customers
only. Permissions follow the owner (rating.services.may): who may view a tenant's
carriers (plans, customers) may view their decks, who may change them may import
and delete decks.
"""

from __future__ import annotations

import io

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from ops.admin.imports import SHOWN_ERRORS, _csv_lines
from ops.admin.scoping import TenantScopedMixin
from ops.history import TenantHistoryMixin
from rating import services
from rating.currencies import CURRENCIES
from rating.exporting import export_rows
from rating.importing import CSV_COLUMNS, WHEN_HELP, ImportFailed, import_deck, parse_when
from rating.models import OWNER_FIELDS, DeckKind, DeckState, Rate, RateDeck
from rating.rows import money_text
from routing.models import Carrier, Customer, RoutingPlan
from tenants.scoping import scope_queryset

RATES_PER_PAGE = 100


def _deck_perm(request, action: str, field: str | None = None) -> bool:
    return services.may(request.user, action, field)


class DeckImportForm(forms.Form):
    """The owner (exactly one of carrier, plan, customer), the file and the deck's values."""

    carrier = forms.ModelChoiceField(
        queryset=Carrier.objects.none(),
        required=False,
        help_text="A vendor deck: what this carrier charges.",
    )
    plan = forms.ModelChoiceField(
        queryset=RoutingPlan.objects.none(),
        required=False,
        label="Routing plan",
        help_text="A sell deck: what the customers on this plan pay.",
    )
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.none(),
        required=False,
        help_text="A sell deck: what this customer pays, instead of its plan's deck.",
    )
    file = forms.FileField(help_text="UTF-8 CSV with a header row (see the columns below).")
    effective = forms.CharField(
        required=False,
        label="Effective from",
        help_text=f"When the deck takes effect: {WHEN_HELP}. Leave empty when the file has "
        "an effective_date column; given, it overrides that column.",
    )
    currency = forms.ChoiceField(
        required=False,
        choices=[("", "from the file's currency column"), *((c, c) for c in sorted(CURRENCIES))],
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, model in (("carrier", Carrier), ("plan", RoutingPlan), ("customer", Customer)):
            queryset = scope_queryset(model.objects.select_related("tenant"), user)
            self.fields[name].queryset = queryset

    def clean(self):
        data = super().clean()
        given = [name for name in OWNER_FIELDS if data.get(name)]
        if len(given) != 1 and not any(name in self.errors for name in OWNER_FIELDS):
            raise forms.ValidationError(
                "Pick exactly one owner: a carrier (vendor deck), a routing plan or a "
                "customer (sell deck)."
            )
        return data

    def owner(self) -> dict:
        """The import's owner argument, e.g. {"plan": <RoutingPlan>}."""
        return {name: self.cleaned_data[name] for name in OWNER_FIELDS if self.cleaned_data[name]}

    def clean_effective(self):
        text = self.cleaned_data["effective"].strip()
        if not text:
            return None
        value = parse_when(text)
        if value is None:
            raise forms.ValidationError(f"Write {WHEN_HELP}.")
        return value


class KindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return DeckKind.choices

    def queryset(self, request, queryset):
        if self.value() in DeckKind.values:
            return queryset.of_kind(self.value())
        return queryset


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return DeckState.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        current = RateDeck.objects.in_force_at(now).values("pk")
        if self.value() == DeckState.IN_FORCE:
            return queryset.filter(pk__in=current)
        if self.value() == DeckState.FUTURE:
            return queryset.filter(effective_from__gt=now)
        if self.value() == DeckState.PAST:
            return queryset.filter(effective_from__lte=now).exclude(pk__in=current)
        return queryset


@admin.register(RateDeck)
class RateDeckAdmin(TenantScopedMixin, TenantHistoryMixin, SimpleHistoryAdmin):
    list_display = [
        "__str__",
        "kind",
        "owner_column",
        "currency",
        "effective_from",
        "state",
        "rows",
        "created_at",
        "export_link",
    ]
    list_filter = [
        KindFilter,
        ("carrier", admin.RelatedOnlyFieldListFilter),
        ("plan", admin.RelatedOnlyFieldListFilter),
        ("customer", admin.RelatedOnlyFieldListFilter),
        StateFilter,
        "currency",
    ]
    search_fields = ["name", "carrier__name", "plan__name", "customer__name"]
    list_select_related = ["carrier", "plan", "customer"]
    ordering = ["carrier__name", "plan__name", "customer__name", "-effective_from"]
    fields = [
        "carrier",
        "plan",
        "customer",
        "name",
        "currency",
        "effective_from",
        "rows",
        "created_at",
        "created_by",
    ]
    readonly_fields = fields
    change_list_template = "admin/rating/ratedeck/change_list.html"
    change_form_template = "admin/rating/ratedeck/change_form.html"

    # --- Permissions: those of the owner ------------------------------------------------

    def has_view_permission(self, request, obj=None):
        field = obj.owner_field if obj is not None else None
        return _deck_perm(request, "view", field) or _deck_perm(request, "change", field)

    def has_add_permission(self, request):
        return False  # decks come from the import page

    def has_change_permission(self, request, obj=None):
        return False  # a deck is replaced by the next one, never edited

    def has_delete_permission(self, request, obj=None):
        return _deck_perm(request, "change", obj.owner_field if obj is not None else None)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def may_import(self, request, field: str | None = None) -> bool:
        return _deck_perm(request, "change", field)

    # --- Columns ------------------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        self._in_force = set(
            RateDeck.objects.in_force_at(timezone.now()).values_list("pk", flat=True)
        )
        extra = {"may_import": self.may_import(request), **(extra_context or {})}
        return super().changelist_view(request, extra)

    @admin.display(description="State")
    def state(self, obj: RateDeck) -> str:
        in_force = getattr(self, "_in_force", None)
        if in_force is None:
            return obj.state()
        return obj.state(in_force_id=obj.pk if obj.pk in in_force else -1)

    @admin.display(description="Kind")
    def kind(self, obj: RateDeck) -> str:
        return obj.kind.value

    @admin.display(description="Owner")
    def owner_column(self, obj: RateDeck) -> str:
        return obj.owner_label()

    @admin.display(description="CSV")
    def export_link(self, obj: RateDeck) -> str:
        url = reverse("admin:rating_ratedeck_export", args=[obj.pk])
        return format_html('<a href="{}">Export</a>', url)

    # --- Deleting goes through the service (it tells every process) --------------------

    def delete_model(self, request, obj) -> None:
        services.delete_deck(user=request.user, deck=obj)

    def delete_queryset(self, request, queryset) -> None:
        for deck in queryset:
            services.delete_deck(user=request.user, deck=deck)

    # --- Pages --------------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="rating_ratedeck_import",
            ),
            path(
                "<path:object_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name="rating_ratedeck_export",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        deck = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if deck is not None:
            rates = Rate.objects.filter(deck=deck).order_by("prefix")
            page = Paginator(rates, RATES_PER_PAGE).get_page(request.GET.get("page"))
            extra.update(
                rates_page=page,
                rate_rows=[
                    (
                        r.prefix,
                        r.description,
                        money_text(r.rate),
                        money_text(r.connect_fee),
                        r.initial_increment,
                        r.next_increment,
                    )
                    for r in page
                ],
                deck_state=deck.state(),
                export_url=reverse("admin:rating_ratedeck_export", args=[deck.pk]),
            )
        return super().change_view(request, object_id, form_url, extra)

    def export_view(self, request, object_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        deck = self.get_object(request, object_id)  # scoped: another tenant's is not found
        if deck is None:
            raise Http404("No such rate deck.")
        response = StreamingHttpResponse(
            _csv_lines(export_rows(deck, with_effective=True)),
            content_type="text/csv; charset=utf-8",
        )
        name = f"{deck.owner_label()}-{deck.effective_from:%Y%m%dT%H%M%S}.csv".replace(" ", "_")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def import_view(self, request):
        if not self.may_import(request):
            raise PermissionDenied
        form = DeckImportForm(request.POST or None, request.FILES or None, user=request.user)
        failed: ImportFailed | None = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            upload = data["file"]
            owner = form.owner()
            if not self.may_import(request, next(iter(owner))):
                raise PermissionDenied
            try:
                result = import_deck(
                    lambda: io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline=""),
                    **owner,
                    effective_from=data["effective"],
                    currency=data["currency"] or None,
                    name=upload.name,
                    user=request.user,
                )
            except ImportFailed as exc:
                failed = exc
            else:
                self.message_user(
                    request,
                    f"Imported {upload.name} for {result.deck.owner_label()}: {result.summary()}.",
                    messages.SUCCESS,
                )
                return redirect("admin:rating_ratedeck_changelist")
        errors = failed.errors if failed else []
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import a rate deck from CSV",
            "form": form,
            "columns": CSV_COLUMNS,
            "errors": errors[:SHOWN_ERRORS],
            "error_count": len(errors) + (failed.more if failed else 0),
        }
        return TemplateResponse(request, "admin/rating/ratedeck/import.html", context)
