"""The prefix list as a workbench: search by number, filters by carrier and trunk, the
route order at a glance, a page-size choice.

DialPrefixAdmin takes these through `PrefixListMixin` so its own class keeps only its
declarations. Every query starts from the admin's scoped queryset
(ops.admin.scoping), and the filters' choices are scoped the same way.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.db.models import Prefetch
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ops import route_order
from ops.numberbox import AS_DIALLED
from routing.models import Carrier, DialPrefix, RouteTarget, RoutingPlan, Trunk
from routing.numbers import clean_number, match_digits, prefixes_of
from tenants.scoping import scope_queryset

PER_PAGE_VAR = "per_page"
PER_PAGE_CHOICES = (50, 100, 500)
DEFAULT_PER_PAGE = 100


def per_page_of(request) -> int:
    """The page size asked for, when it is one of the choices (else the default)."""
    try:
        asked = int(request.GET.get(PER_PAGE_VAR, ""))
    except ValueError:
        return DEFAULT_PER_PAGE
    return asked if asked in PER_PAGE_CHOICES else DEFAULT_PER_PAGE


class PerPageChangeList(ChangeList):
    """A change list whose page size is ?per_page= (bounded), kept in every link."""

    def get_filters_params(self, params=None):
        lookup = super().get_filters_params(params)
        lookup.pop(PER_PAGE_VAR, None)  # not a field lookup
        return lookup

    def get_results(self, request):
        self.list_per_page = per_page_of(request)
        super().get_results(request)

    def per_page_links(self) -> list[tuple[int, str, bool]]:
        """(size, link, chosen) for the page-size choice under the list (back to page 1)."""
        return [
            (
                size,
                self.get_query_string({PER_PAGE_VAR: size}, [PAGE_VAR]),
                size == self.list_per_page,
            )
            for size in PER_PAGE_CHOICES
        ]


class _ScopedTargetFilter(admin.SimpleListFilter):
    """Routes with a target on one of the user's carriers or trunks.

    A subquery on route targets (not a join) so a route with two targets on the
    carrier is listed once; a forged id of another tenant's finds nothing, since the
    list's queryset is already the user's.
    """

    path = ""
    model: type = Carrier

    def choices_queryset(self, request):
        raise NotImplementedError

    def lookups(self, request, model_admin):
        return [(str(row.pk), str(row)) for row in self.choices_queryset(request)]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        try:
            pk = int(value)
        except ValueError:
            return queryset.none()
        targets = RouteTarget.objects.filter(**{self.path: pk}).values("prefix_id")
        return queryset.filter(pk__in=targets)


class CarrierFilter(_ScopedTargetFilter):
    title = "carrier"
    parameter_name = "carrier"
    path = "trunk__carrier_id"

    def choices_queryset(self, request):
        return scope_queryset(Carrier.objects.order_by("name"), request.user)


class TrunkFilter(_ScopedTargetFilter):
    title = "trunk"
    parameter_name = "trunk"
    path = "trunk_id"

    def choices_queryset(self, request):
        carrier = request.GET.get(CarrierFilter.parameter_name, "")
        trunks = Trunk.objects.select_related("carrier").order_by("carrier__name", "name")
        if carrier.isdigit():
            trunks = trunks.filter(carrier_id=int(carrier))  # the carrier's trunks only
        return scope_queryset(trunks, request.user)


class PrefixListMixin:
    """Search by number, filters by carrier and trunk, the targets column, page size."""

    search_help_text = (
        "A number (+44 20 7123 4567, 442071234567) finds the longest prefix it matches "
        "and its shorter parents; words search descriptions and caller rules."
    )

    def get_changelist(self, request, **kwargs):
        return PerPageChangeList

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        return [*filters, CarrierFilter, TrunkFilter]

    def get_queryset(self, request):
        # One query for every target of the page, with trunk, carrier, health, schedule.
        targets = RouteTarget.objects.select_related("trunk__carrier", "trunk__health", "schedule")
        return super().get_queryset(request).prefetch_related(Prefetch("targets", targets))

    def get_search_results(self, request, queryset, search_term):
        """A number lists its prefix chain: the longest prefix it matches and its shorter
        parents (the resolver's candidates, prefix IN every leading part of it, on the
        (plan, prefix) index: a few milliseconds at a million rows, where a substring
        search scans the table). Anything else is the usual text search."""
        cleaned = clean_number(search_term)
        if not search_term.strip() or match_digits(cleaned) is None:
            return super().get_search_results(request, queryset, search_term)
        # As typed, and read as the number box reads it ("+44.." and "0044.." are 44..).
        readings = {match_digits(cleaned), AS_DIALLED.to_e164(cleaned)[0]}
        candidates = sorted({p for digits in readings for p in prefixes_of(digits)})
        plans = scope_queryset(RoutingPlan.objects.all(), request.user)
        plan_ids = list(plans.values_list("pk", flat=True))
        return queryset.filter(plan_id__in=plan_ids, prefix__in=candidates), False

    @admin.display(description="Targets in order")
    def target_summary(self, obj: DialPrefix) -> str:
        """The route at a glance: what it does, then its targets as lanes (route_order)."""
        if obj.action == "reject":
            return f"reject {obj.reject_code} {obj.reject_reason}".strip()
        if obj.action == "location":
            return "local users"
        targets = list(obj.targets.all())
        how = [
            STRATEGY_WORDS.get(obj.strategy, ""),
            "parallel" if obj.routing_mode == "parallel" else "",
        ]
        words = format_html_join(" ", '<span class="ro-mode">{}</span> ', ((w,) for w in how if w))
        if obj.strategy == "lcr_all":
            return words
        if not targets:
            return "no target: calls fall back" if not obj.is_final else "no target: 503"
        now = timezone.now()
        steps = [route_order.step_of_target(t, now) for t in targets]
        return format_html("{}{}", words, route_order.render(steps, obj.routing_mode))


STRATEGY_WORDS = {"lcr": "least cost:", "lcr_all": "least cost over every trunk"}
