"""The operator's side of staged routing plans (versions.publishing): a plan's Versions
page (its draft's differences, route tests, impact preview, publish form, kept versions
with rollback), the diff between any two views, the route tests' admin and the lookup
of a sampled decision by the id Kamailio logs.

The plan pages hang under the RoutingPlan admin (PlanVersionsMixin.get_urls), so its
scoped get_object() is the one tenant rule: another tenant's plan is a 404, the same as
one that does not exist. A refusal of the domain (PublishRefused, SimulationRefused)
is an admin error message, never a 500. Publishing and rolling back need
versions.publish_planversion: without it the forms are not shown and a POST is a 403.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from ops.admin.scoping import TenantScopedAdmin
from routing.models import RoutingPlan
from tenants.scoping import EVERYTHING, scope_queryset, user_scope
from versions import impact, pins, route_tests
from versions.models import DecisionSample, PlanVersion, RouteTest
from versions.publishing import (
    DRAFT,
    Diff,
    DiffRow,
    PublishRefused,
    RouteTestsFailed,
    describe_targets,
    diff,
    discard_draft,
    label,
    publish,
    rollback,
    trunk_names,
)

PUBLISH_PERMISSION = "versions.publish_planversion"
FORCE_PERMISSION = "versions.force_publish_planversion"
DIFF_ROWS_ON_VERSIONS_PAGE = 200
DIFF_ROWS_PER_PAGE = 200
DIFF_MAX_PAGES = 50  # beyond 10,000 rows: the counts, and an export of the table
IMPACT_EXAMPLES = 20


# --- Reading a diff for people ------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    """One row of a diff table as the templates show it."""

    change: str
    prefix: str
    caller: str
    old_targets: str
    new_targets: str
    columns: str


def caller_condition(row: DiffRow) -> str:
    route = row.route
    parts = []
    if route.value("caller_prefix"):
        parts.append(f"caller {route.value('caller_prefix')}…")
    if route.value("caller_pattern"):
        parts.append(f"caller ~{route.value('caller_pattern')}")
    if route.value("schedule_id"):
        parts.append(f"schedule #{route.value('schedule_id')}")
    return ", ".join(parts) or "any caller, always"


def diff_lines(rows: list[DiffRow], names: dict[int, str]) -> list[DiffLine]:
    return [
        DiffLine(
            change=row.change,
            prefix=row.prefix or "(default route)",
            caller=caller_condition(row),
            old_targets=describe_targets(row.old, names),
            new_targets=describe_targets(row.new, names),
            columns=", ".join(row.changed_columns()),
        )
        for row in rows
    ]


def view_name(version: int | None) -> str:
    """A view of a plan as the diff page's query string names it."""
    return "draft" if version is None else str(version)


def parse_view(value: str | None, plan: RoutingPlan, default: str) -> int | None:
    """ "draft", "live" or a number; PublishRefused for anything else."""
    value = (value or default).strip().lower()
    if value == "draft":
        return DRAFT
    if value == "live":
        return plan.published_version  # not staged: the saved routes are live
    try:
        number = int(value)
    except ValueError:
        raise PublishRefused(
            f"{value!r} is not a version: give 'draft', 'live' or a version number."
        ) from None
    if number < 1:
        raise PublishRefused("Version numbers start at 1.")
    return number


def versions_url(plan: RoutingPlan) -> str:
    return reverse("admin:routing_routingplan_versions", args=[plan.pk])


def diff_url(plan: RoutingPlan, old: int | None, new: int | None) -> str:
    url = reverse("admin:routing_routingplan_diff", args=[plan.pk])
    return f"{url}?{urlencode({'from': view_name(old), 'to': view_name(new)})}"


# --- The plan's pages (mixed into RoutingPlanAdmin) ---------------------------------


class PlanVersionsMixin:
    """The Versions, diff and rollback pages of a routing plan, and their links."""

    @admin.display(description="Versions")
    def versions_link(self, obj: RoutingPlan) -> str:
        state = (
            f"live: version {obj.published_version}"
            if obj.published_version is not None
            else "not staged"
        )
        return format_html('<a href="{}">{}</a>', versions_url(obj), state)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("versions/", wrap(self.overview_view), name="routing_routingplan_overview"),
            path(
                "<path:object_id>/versions/",
                wrap(self.versions_view),
                name="routing_routingplan_versions",
            ),
            path(
                "<path:object_id>/versions/diff/",
                wrap(self.diff_view),
                name="routing_routingplan_diff",
            ),
            path(
                "<path:object_id>/versions/publish/",
                wrap(require_POST(self.publish_view)),
                name="routing_routingplan_publish",
            ),
            path(
                "<path:object_id>/versions/discard/",
                wrap(require_POST(self.discard_view)),
                name="routing_routingplan_discard",
            ),
            path(
                "<path:object_id>/versions/<int:number>/rollback/",
                wrap(self.rollback_view),
                name="routing_routingplan_rollback",
            ),
            *super().get_urls(),
        ]

    def _plan(self, request: HttpRequest, object_id: str) -> RoutingPlan:
        plan = self.get_object(request, unquote(object_id))  # scoped: another tenant's is None
        if plan is None or not self.has_view_permission(request, plan):
            raise Http404("No such routing plan.")
        return plan

    def _context(self, request: HttpRequest, plan: RoutingPlan, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "plan": plan,
            "versions_url": versions_url(plan),
            "can_publish": request.user.has_perm(PUBLISH_PERMISSION),
            "can_force": request.user.has_perm(FORCE_PERMISSION),
        }

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        """Every plan the user may see, staged or not, with a link to its Versions page."""
        if user_scope(request.user) is None:
            raise PermissionDenied("This account operates no tenant.")
        plans = scope_queryset(RoutingPlan.objects.select_related("tenant"), request.user)
        plans = plans.order_by("tenant__name", "name")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Versions of routing plans",
            "plans": [(plan, versions_url(plan)) for plan in plans],
            "show_tenant": user_scope(request.user) is EVERYTHING,
        }
        return TemplateResponse(request, "admin/versions/overview.html", context)

    def versions_view(
        self, request: HttpRequest, object_id: str, test_results: list | None = None
    ) -> HttpResponse:
        plan = self._plan(request, object_id)
        context = self._context(request, plan, f"Versions of {plan}")
        live = plan.published_version
        names = trunk_names(plan.tenant_id)
        if live is not None:
            pending = diff(plan, live, DRAFT, limit=DIFF_ROWS_ON_VERSIONS_PAGE)
            context["diff"] = pending
            context["diff_lines"] = diff_lines(pending.rows, names)
            context["diff_all_url"] = diff_url(plan, live, DRAFT)
            if not pending.empty:
                preview = impact.preview(plan, examples=IMPACT_EXAMPLES)
                context["impact"] = preview
                context["impact_examples"] = [
                    (ex.sample, ex.what, ex.describe(ex.live), ex.describe(ex.draft))
                    for ex in preview.examples
                ]
        if test_results is None and request.GET.get("run_tests"):
            tests = RouteTest.objects.filter(plan=plan, is_active=True).select_related(
                "tenant", "customer", "plan"
            )
            test_results = route_tests.run(list(tests), pin=pins.draft(plan.pk))
            route_tests.record(test_results)
        context["test_results"] = test_results
        context["test_count"] = RouteTest.objects.filter(plan=plan, is_active=True).count()
        context["tests_url"] = (
            reverse("admin:versions_routetest_changelist") + f"?plan__id__exact={plan.pk}"
        )
        kept = list(PlanVersion.objects.filter(plan=plan).order_by("-number"))
        numbers = {version.number for version in kept}
        context["versions"] = [
            {
                "version": version,
                "previous_url": diff_url(plan, version.number - 1, version.number)
                if version.number - 1 in numbers
                else "",
                "draft_url": diff_url(plan, version.number, DRAFT),
                "rollback_url": reverse(
                    "admin:routing_routingplan_rollback", args=[plan.pk, version.number]
                )
                if live is not None and version.number != live
                else "",
            }
            for version in kept
        ]
        context["publish_url"] = reverse("admin:routing_routingplan_publish", args=[plan.pk])
        context["discard_url"] = reverse("admin:routing_routingplan_discard", args=[plan.pk])
        context["next_version"] = (live or 0) + 1
        return TemplateResponse(request, "admin/versions/plan.html", context)

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        plan = self._plan(request, object_id)
        if not request.user.has_perm(PUBLISH_PERMISSION):
            raise PermissionDenied
        expected_raw = request.POST.get("expected", "")
        try:
            expected = int(expected_raw) if expected_raw else None
        except ValueError:
            expected = None
        try:
            done = publish(
                plan,
                user=request.user,
                comment=request.POST.get("comment", "").strip(),
                expected=expected,
                force=bool(request.POST.get("force")),
            )
        except RouteTestsFailed as failed:
            messages.error(request, str(failed))
            plan.refresh_from_db()
            return self.versions_view(request, object_id, test_results=failed.results)
        except PublishRefused as refused:
            messages.error(request, str(refused))
            return HttpResponseRedirect(versions_url(plan))
        version = done.version
        messages.success(
            request,
            f"Published version {version.number} of plan {plan}: {version.added} added, "
            f"{version.removed} removed, {version.changed} changed"
            + (" (forced past failing route tests)." if version.forced else "."),
        )
        return HttpResponseRedirect(versions_url(plan))

    def discard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: make the draft the live version again (the form asks to confirm)."""
        plan = self._plan(request, object_id)
        if not request.user.has_perm(PUBLISH_PERMISSION):
            raise PermissionDenied
        if not request.POST.get("confirm"):
            messages.error(request, "Tick the box to confirm that the draft's changes are lost.")
            return HttpResponseRedirect(versions_url(plan))
        try:
            done = discard_draft(plan)
        except PublishRefused as refused:
            messages.error(request, str(refused))
            return HttpResponseRedirect(versions_url(plan))
        diff = done.diff
        messages.success(
            request,
            f"Discarded the draft: {diff.total} route{'s' if diff.total != 1 else ''} back as in "
            f"version {plan.published_version}.",
        )
        for line in done.skipped:
            messages.warning(request, f"Not restored: {line}.")
        return HttpResponseRedirect(versions_url(plan))

    def rollback_view(self, request: HttpRequest, object_id: str, number: int) -> HttpResponse:
        """GET: the confirmation, with what the rollback changes; POST: the rollback."""
        plan = self._plan(request, object_id)
        if not request.user.has_perm(PUBLISH_PERMISSION):
            raise PermissionDenied
        live = plan.published_version
        if request.method == "POST":
            expected_raw = request.POST.get("expected", "")
            try:
                done = rollback(
                    plan,
                    number,
                    user=request.user,
                    comment=request.POST.get("comment", "").strip(),
                    expected=int(expected_raw) if expected_raw.isdigit() else None,
                )
            except PublishRefused as refused:
                messages.error(request, str(refused))
                return HttpResponseRedirect(versions_url(plan))
            messages.success(
                request,
                f"Rolled plan {plan} back to the routes of version {number}: it is now "
                f"version {done.version.number}.",
            )
            return HttpResponseRedirect(versions_url(plan))
        if live is None:
            messages.error(request, f"Plan {plan} has no published version to roll back.")
            return HttpResponseRedirect(versions_url(plan))
        try:
            found = diff(plan, live, number, limit=DIFF_ROWS_ON_VERSIONS_PAGE)
        except PublishRefused as refused:
            messages.error(request, str(refused))
            return HttpResponseRedirect(versions_url(plan))
        context = self._context(request, plan, f"Roll {plan} back to version {number}?")
        context.update(
            {
                "number": number,
                "live": live,
                "diff": found,
                "diff_lines": diff_lines(found.rows, trunk_names(plan.tenant_id)),
                "diff_all_url": diff_url(plan, live, number),
            }
        )
        return TemplateResponse(request, "admin/versions/rollback.html", context)

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        plan = self._plan(request, object_id)
        context = self._context(request, plan, f"Differences of {plan}")
        try:
            old = parse_view(request.GET.get("from"), plan, "live")
            new = parse_view(request.GET.get("to"), plan, "draft")
        except PublishRefused as refused:
            messages.error(request, str(refused))
            return HttpResponseRedirect(versions_url(plan))
        try:
            page = min(max(int(request.GET.get("page") or 1), 1), DIFF_MAX_PAGES)
        except ValueError:
            page = 1
        try:
            found: Diff = diff(plan, old, new, limit=page * DIFF_ROWS_PER_PAGE)
        except PublishRefused as refused:
            messages.error(request, str(refused))
            return HttpResponseRedirect(versions_url(plan))
        rows = found.rows[(page - 1) * DIFF_ROWS_PER_PAGE :]
        base = {"from": view_name(old), "to": view_name(new)}
        context.update(
            {
                "title": f"{plan}: {label(new)} compared with {label(old)}",
                "old_label": label(old),
                "new_label": label(new),
                "diff": found,
                "diff_lines": diff_lines(rows, trunk_names(plan.tenant_id)),
                "page": page,
                "first_row": (page - 1) * DIFF_ROWS_PER_PAGE + 1,
                "last_row": (page - 1) * DIFF_ROWS_PER_PAGE + len(rows),
                "previous_url": f"?{urlencode({**base, 'page': page - 1})}" if page > 1 else "",
                "next_url": f"?{urlencode({**base, 'page': page + 1})}"
                if found.truncated and page < DIFF_MAX_PAGES
                else "",
                "beyond_pages": found.truncated and page >= DIFF_MAX_PAGES,
            }
        )
        return TemplateResponse(request, "admin/versions/diff.html", context)


# --- Route tests ----------------------------------------------------------------------


def _run_tests(modeladmin, request, queryset, *, draft: bool):
    tests = list(queryset.select_related("tenant", "customer", "plan"))
    by_plan: dict[int, list[RouteTest]] = defaultdict(list)
    for test in tests:
        by_plan[test.plan_id].append(test)
    results = []
    for plan_id, group in by_plan.items():
        results.extend(route_tests.run(group, pin=pins.draft(plan_id) if draft else None))
    route_tests.record(results)
    failed = sum(not result.passed for result in results)
    against = "the draft" if draft else "live"
    modeladmin.message_user(
        request,
        f"{len(results)} route test{'s' if len(results) != 1 else ''} run against {against}: "
        f"{len(results) - failed} passed, {failed} failed.",
        messages.WARNING if failed else messages.SUCCESS,
    )
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": f"Route tests against {against}",
        "results": results,
        "against": against,
    }
    return TemplateResponse(request, "admin/versions/test_results.html", context)


@admin.action(description="Run against the draft")
def run_against_draft(modeladmin, request, queryset):
    return _run_tests(modeladmin, request, queryset, draft=True)


@admin.action(description="Run against live")
def run_against_live(modeladmin, request, queryset):
    return _run_tests(modeladmin, request, queryset, draft=False)


@admin.register(RouteTest)
class RouteTestAdmin(TenantScopedAdmin):
    list_display = ["name", "plan", "tenant", "call", "expectation", "last_result"]
    list_filter = [
        "tenant",
        ("plan", admin.RelatedOnlyFieldListFilter),
        "is_active",
        "last_passed",
    ]
    search_fields = ["name", "callee", "caller"]
    list_select_related = ["plan", "tenant", "customer"]
    actions = [run_against_draft, run_against_live]
    fieldsets = (
        (None, {"fields": ["tenant", "plan", "name", "is_active"]}),
        ("The call", {"fields": ["customer", "source_ip", "caller", "callee", "at"]}),
        (
            "What it must get (empty: not checked)",
            {
                "fields": [
                    "expect_outcome",
                    "expect_code",
                    "expect_first_trunk",
                    "expect_trunk_order",
                ]
            },
        ),
        ("Last run", {"fields": ["last_run_at", "last_passed", "last_message"]}),
    )
    readonly_fields = ["last_run_at", "last_passed", "last_message"]

    @admin.display(description="Call")
    def call(self, obj: RouteTest) -> str:
        who = obj.customer.name if obj.customer_id else (obj.source_ip or "the plan")
        return f"{obj.caller or 'any'} → {obj.callee} ({who})"

    @admin.display(description="Expects")
    def expectation(self, obj: RouteTest) -> str:
        parts = []
        if obj.expect_outcome:
            parts.append(obj.expect_outcome.replace("_", " "))
        if obj.expect_code:
            parts.append(str(obj.expect_code))
        if obj.expect_first_trunk:
            parts.append(f"first {obj.expect_first_trunk}")
        if obj.expect_trunk_order:
            parts.append(f"order {obj.expect_trunk_order}")
        return ", ".join(parts) or "nothing (any answer passes)"

    @admin.display(description="Last result", ordering="last_run_at")
    def last_result(self, obj: RouteTest) -> str:
        if obj.last_run_at is None:
            return "never run"
        verdict = "passed" if obj.last_passed else f"failed: {obj.last_message}"
        return f"{verdict} ({obj.last_run_at:%Y-%m-%d %H:%M %Z})"


# --- The decision log -------------------------------------------------------------------


@admin.register(DecisionSample)
class DecisionSampleAdmin(TenantScopedAdmin):
    list_display = [
        "decision_id",
        "decided_at",
        "tenant",
        "plan",
        "plan_version",
        "callee",
        "outcome",
        "code",
        "first_trunk",
    ]
    list_filter = ["tenant", "outcome", "transport"]
    search_fields = ["=decision_id", "request__callee"]
    list_select_related = ["tenant", "plan"]
    date_hierarchy = "decided_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Callee")
    def callee(self, obj: DecisionSample) -> str:
        return obj.request.get("callee", "")

    @admin.display(description="First trunk")
    def first_trunk(self, obj: DecisionSample) -> str:
        return obj.trunks[0] if obj.trunks else ""


def decision_lookup_view(request: HttpRequest) -> HttpResponse:
    """The sampled decision with the id Kamailio logged; another tenant's is unknown."""
    if user_scope(request.user) is None:
        raise PermissionDenied("This account operates no tenant.")
    asked = (request.GET.get("decision_id") or "").strip()
    sample = None
    if asked:
        samples = scope_queryset(DecisionSample.objects.select_related("plan"), request.user)
        sample = samples.filter(Q(decision_id=asked)).first()
    context = {
        **admin.site.each_context(request),
        "title": "Decision lookup",
        "asked": asked,
        "sample": sample,
        "request_fields": sorted(sample.request.items()) if sample else [],
        "plan_url": versions_url(sample.plan) if sample and sample.plan else "",
    }
    return TemplateResponse(request, "admin/versions/decision.html", context)
