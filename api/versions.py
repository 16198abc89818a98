"""The REST API of staged routing plans: versions, diffs, publish, rollback, route tests,
the impact preview and the decision log (versions.*).

- `/api/v1/routing-plans/{id}/versions`: the plan's kept versions and the one calls use;
- `/api/v1/routing-plans/{id}/diff?from=&to=&limit=`: how two views differ ("draft", "live" or a
  version number; default from the live version to the draft);
- `/api/v1/routing-plans/{id}/publish` and `/rollback`: 201 with what changed, 409 when refused
  (someone published meanwhile, nothing to publish, failing route tests);
- `/api/v1/routing-plans/{id}/run-tests`: the plan's route tests against the draft, the live
  version or a kept one (their last results are kept on them);
- `/api/v1/routing-plans/{id}/impact?limit=`: the plan's sampled calls replayed against the draft;
- `/api/v1/route-tests`: the route tests themselves (list, create, retrieve, update, delete);
- `/api/v1/decisions/{decision_id}`: a sampled decision, by the id Kamailio logs.

Scoped like the rest of the API: another tenant's plan, test or decision is a 404 worded
as for one that does not exist, and naming another tenant's plan or customer in a write
is refused like an unknown id. Publishing and rolling back need the
"versions.publish_planversion" permission; forcing a publish past failing route tests
"versions.force_publish_planversion" as well.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import django_filters as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from api.filters import IdFilter
from api.permissions import HasTenantScope, ModelPermissions
from api.serializers import ScopedModelSerializer, SlugRelatedField
from api.views import USER_AUTHENTICATION, ScopedViewSet
from routing.models import Customer, RoutingPlan
from routing.rows import RouteRow, builder
from tenants.models import Tenant
from tenants.scoping import scope_queryset
from versions import impact, pins, route_tests
from versions.models import DecisionSample, PlanVersion, RouteTest
from versions.publishing import (
    DRAFT,
    DiffRow,
    PublishRefused,
    RouteTestsFailed,
    RouteVersion,
    check_kept,
    describe_targets,
    diff,
    discard_draft,
    publish,
    rollback,
    trunk_names,
)

MAX_DIFF_ROWS = 10_000
MAX_VERSION = 2**31 - 1  # PlanVersion.number is a positive integer column
_route_row = builder(RouteRow)


# --- Reading "draft", "live" or a number ----------------------------------------------


def view_of(text: str | int | None, plan: RoutingPlan, *, name: str) -> int | None:
    """The view of the plan a parameter names: None (the draft) or a version number.

    PublishRefused says what is wrong (not a view, live on an unstaged plan); whether
    the version is kept is checked where it is read (check_kept).
    """
    given = str(text).strip().lower() if text is not None else ""
    if given == "draft":
        return DRAFT
    if given == "live":
        if plan.published_version is None:
            raise PublishRefused(
                f"Plan {plan} is not staged: it has no live version yet (its saved routes "
                "are live as they are; its first publish stages it)."
            )
        return plan.published_version
    if given.isascii() and given.isdigit() and 0 < int(given) <= MAX_VERSION:
        return int(given)
    shown = given if len(given) <= 20 else given[:20] + "…"
    raise PublishRefused(
        f"'{name}' is 'draft', 'live' or a version number (1 or more), not {shown!r}."
    )


def refused(exc: PublishRefused, code: int = status.HTTP_409_CONFLICT) -> Response:
    return Response({"detail": str(exc)}, status=code)


# --- Serializers ------------------------------------------------------------------------


class PlanVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlanVersion
        fields = [
            "number",
            "kind",
            "source",
            "published_at",
            "published_by_name",
            "comment",
            "routes",
            "added",
            "removed",
            "changed",
            "forced",
            "failed_tests",
        ]
        read_only_fields = fields


class VersionsAnswerSerializer(serializers.Serializer):
    published_version = serializers.IntegerField(
        allow_null=True, help_text="The version calls use (null: the plan is not staged)."
    )
    versions = PlanVersionSerializer(many=True, help_text="The kept versions, newest first.")


class DiffRowSerializer(serializers.Serializer):
    change = serializers.ChoiceField(choices=["added", "removed", "changed"])
    prefix = serializers.CharField()
    caller_prefix = serializers.CharField()
    caller_pattern = serializers.CharField()
    schedule_id = serializers.IntegerField(allow_null=True)
    changed_columns = serializers.ListField(
        child=serializers.CharField(), help_text='The columns (and "targets") that differ.'
    )
    old_targets = serializers.CharField(help_text="The old targets, as an operator reads them.")
    new_targets = serializers.CharField(help_text="The new targets, as an operator reads them.")
    old = serializers.DictField(allow_null=True, help_text="The route's old columns (null: new).")
    new = serializers.DictField(allow_null=True, help_text="The route's new columns (null: gone).")


class DiffAnswerSerializer(serializers.Serializer):
    from_ = serializers.IntegerField(allow_null=True, help_text="The old view (null: the draft).")
    to = serializers.IntegerField(allow_null=True, help_text="The new view (null: the draft).")
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    changed = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="More rows differ than `limit`.")
    rows = DiffRowSerializer(many=True)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class TestResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The route test's id.")
    name = serializers.CharField()
    passed = serializers.BooleanField()
    message = serializers.CharField(help_text='"passed", or what the call got wrong.')
    outcome = serializers.CharField(allow_null=True, help_text="The call's outcome.")
    code = serializers.IntegerField(allow_null=True, help_text="The call's SIP code.")
    trunks = serializers.ListField(
        child=serializers.CharField(), help_text="The trunks in order, by name."
    )


class PublishSerializer(serializers.Serializer):
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, default="", help_text="Why."
    )
    expected_version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_VERSION,
        help_text="The version the draft was reviewed against: refused (409) if another "
        "was published since.",
    )
    force = serializers.BooleanField(
        default=False,
        help_text="Publish although route tests fail (needs the force permission).",
    )


class RollbackSerializer(serializers.Serializer):
    to = serializers.IntegerField(
        min_value=1, max_value=MAX_VERSION, help_text="The kept version to publish again."
    )
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    expected_version = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_VERSION
    )


class PublishedSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The new version's number.")
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    changed = serializers.IntegerField()
    tests = TestResultSerializer(many=True, help_text="The route tests run before it.")


class DiscardedSerializer(serializers.Serializer):
    added = serializers.IntegerField(help_text="Draft routes the live version does not have.")
    removed = serializers.IntegerField(help_text="Live routes the draft had deleted.")
    changed = serializers.IntegerField(help_text="Routes the draft had changed.")
    skipped = serializers.ListField(
        child=serializers.CharField(),
        help_text="Routes or targets that could not come back (their trunk or schedule is gone).",
    )


class RefusedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    tests = TestResultSerializer(
        many=True, required=False, help_text="When route tests failed: every test's result."
    )


class RunTestsSerializer(serializers.Serializer):
    against = serializers.CharField(
        required=False,
        default="draft",
        max_length=20,
        help_text='"draft" (default), "live" (as calls get it) or a kept version number.',
    )


class RunTestsAnswerSerializer(serializers.Serializer):
    against = serializers.IntegerField(
        allow_null=True, help_text="The version read (null: the draft, or the saved routes)."
    )
    results = TestResultSerializer(many=True)


class ChangedCallSerializer(serializers.Serializer):
    decision_id = serializers.CharField()
    callee = serializers.CharField()
    caller = serializers.CharField()
    what = serializers.CharField(help_text='"outcome" or "first trunk".')
    live = serializers.CharField(help_text="What the call gets now.")
    draft = serializers.CharField(help_text="What it would get from the draft.")


class ImpactAnswerSerializer(serializers.Serializer):
    replayed = serializers.IntegerField(help_text="Sampled calls replayed.")
    outcome_changed = serializers.IntegerField()
    first_trunk_changed = serializers.IntegerField()
    oldest = serializers.DateTimeField(
        allow_null=True, help_text="When the oldest replayed call was made."
    )
    examples = ChangedCallSerializer(many=True)


class ImpactQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False, default=impact.DEFAULT_LIMIT, min_value=1, max_value=10_000
    )


class DiffQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False, default=1000, min_value=1, max_value=MAX_DIFF_ROWS
    )


def result_data(result: route_tests.TestResult) -> dict[str, Any]:
    decision = result.decision
    return {
        "id": result.test.pk,
        "name": result.test.name,
        "passed": result.passed,
        "message": result.message,
        "outcome": str(decision.outcome) if decision else None,
        "code": decision.code if decision else None,
        "trunks": [route.trunk for route in decision.routes] if decision else [],
    }


def route_data(route: RouteVersion | None) -> dict[str, Any] | None:
    """A route's columns as JSON: exact decimals as text, booleans as booleans."""
    if route is None:
        return None
    row = _route_row(route.values)
    return {
        name: str(value) if isinstance(value, Decimal) else value
        for name, value in dataclasses.asdict(row).items()
    }


def diff_row_data(row: DiffRow, names_by_id: dict[int, str]) -> dict[str, Any]:
    route = row.route
    return {
        "change": row.change,
        "prefix": row.prefix,
        "caller_prefix": route.value("caller_prefix") or "",
        "caller_pattern": route.value("caller_pattern") or "",
        "schedule_id": route.value("schedule_id"),
        "changed_columns": row.changed_columns(),
        "old_targets": describe_targets(row.old, names_by_id),
        "new_targets": describe_targets(row.new, names_by_id),
        "old": route_data(row.old),
        "new": route_data(row.new),
    }


# --- Plans: versions, diff, publish, rollback, tests, impact -------------------------------


_ACTION_PERMISSIONS = {
    "versions": "versions.view_planversion",
    "diff": "versions.view_planversion",
    "publish": "versions.publish_planversion",
    "rollback": "versions.publish_planversion",
    "discard": "versions.publish_planversion",
    "run_tests": "versions.view_routetest",
    "impact": "versions.view_decisionsample",
}


class PlanVersionPermissions(BasePermission):
    """Each action's permission: viewing versions, publishing (and rolling back),
    running route tests, replaying sampled calls."""

    message = "You may not do this with routing plan versions."

    def has_permission(self, request, view) -> bool:
        wanted = _ACTION_PERMISSIONS.get(getattr(view, "action", None) or "")
        if wanted is None:
            return False
        if wanted == "versions.publish_planversion":
            self.message = "You may not publish or roll back routing plans."
        return request.user.has_perm(wanted)


_PLAN_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Routing plan id.")


@extend_schema(tags=["versions"], parameters=[_PLAN_ID])
class PlanVersionsViewSet(viewsets.GenericViewSet):
    """A staged plan's versions and what operators do with them (versions.publishing).

    The plan is looked up within the user's scope (tenants.scoping): another tenant's
    plan is a 404, as for an id that does not exist.
    """

    authentication_classes = USER_AUTHENTICATION
    permission_classes = [IsAuthenticated, HasTenantScope, PlanVersionPermissions]
    queryset = RoutingPlan.objects.select_related("tenant")
    serializer_class = VersionsAnswerSerializer
    pagination_class = None

    def get_queryset(self):
        return scope_queryset(super().get_queryset(), self.request.user)

    @extend_schema(responses={200: VersionsAnswerSerializer}, summary="A plan's kept versions")
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk=None) -> Response:
        """The plan's kept versions, newest first, and the one calls use
        (`published_version`; null: the plan is not staged, its saved routes are live)."""
        plan = self.get_object()
        kept = PlanVersion.objects.filter(plan=plan).order_by("-number")
        return Response(
            {
                "published_version": plan.published_version,
                "versions": PlanVersionSerializer(kept, many=True).data,
            }
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "from", str, description='"draft", "live" (default) or a version number.'
            ),
            OpenApiParameter("to", str, description='"draft" (default), "live" or a number.'),
            OpenApiParameter("limit", int, description="Rows at most (default 1000)."),
        ],
        responses={200: DiffAnswerSerializer},
        summary="How two views of a plan differ",
    )
    @action(detail=True, methods=["get"])
    def diff(self, request: Request, pk=None) -> Response:
        """The routes that differ from one view of the plan to another: "draft" (its saved
        routes), "live" (the version calls use) or a kept version number; by default from
        the live version to the draft. A view that is not one (not a number, a version
        not kept, live on a plan not staged) is a 400 saying why."""
        plan = self.get_object()
        query = DiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = request.query_params
        try:
            old = view_of(params.get("from", "live"), plan, name="from")
            new = view_of(params.get("to", "draft"), plan, name="to")
            found = diff(plan, old, new, limit=query.validated_data["limit"])
        except PublishRefused as exc:
            return refused(exc, status.HTTP_400_BAD_REQUEST)
        names_by_id = trunk_names(plan.tenant_id)
        return Response(
            {
                "from": old,
                "to": new,
                "added": found.added,
                "removed": found.removed,
                "changed": found.changed,
                "truncated": found.truncated,
                "rows": [diff_row_data(row, names_by_id) for row in found.rows],
            }
        )

    @extend_schema(
        request=PublishSerializer,
        responses={201: PublishedSerializer, 409: RefusedSerializer},
        summary="Publish the plan's draft as its next version",
    )
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk=None) -> Response:
        """Publish the draft as the next version, after the plan's active route tests.

        409 when refused: nothing to publish, another version published since
        `expected_version`, or failing route tests (every result in `tests`). `force`
        publishes past failing tests, for users with the force permission (else 403).
        """
        plan = self.get_object()
        form = PublishSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        if data["force"] and not request.user.has_perm("versions.force_publish_planversion"):
            self.permission_denied(
                request,
                "You may not force a publish past failing route tests: ask a user with the "
                "'Can publish although route tests fail' permission.",
            )
        try:
            done = publish(
                plan,
                user=request.user,
                comment=data["comment"],
                expected=data.get("expected_version"),
                force=data["force"],
            )
        except RouteTestsFailed as exc:
            return Response(
                {"detail": str(exc), "tests": [result_data(r) for r in exc.results]},
                status=status.HTTP_409_CONFLICT,
            )
        except PublishRefused as exc:
            return refused(exc)
        return self._published(done)

    @extend_schema(
        request=RollbackSerializer,
        responses={201: PublishedSerializer, 409: RefusedSerializer},
        summary="Publish a kept version's routes again, as the plan's next version",
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk=None) -> Response:
        """Publish the routes of kept version `to` as the next version (the draft stays as
        it is; no route tests). 409 when refused, saying why."""
        plan = self.get_object()
        form = RollbackSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            done = rollback(
                plan,
                data["to"],
                user=request.user,
                comment=data["comment"],
                expected=data.get("expected_version"),
            )
        except PublishRefused as exc:
            return refused(exc)
        return self._published(done)

    @extend_schema(
        request=None,
        responses={200: DiscardedSerializer, 409: RefusedSerializer},
        summary="Discard the draft: its routes become the live version's again",
    )
    @action(detail=True, methods=["post"])
    def discard(self, request: Request, pk=None) -> Response:
        """Make the draft the live version again (the draft's changes are lost); 409 when
        the plan is not staged or the draft has no change."""
        plan = self.get_object()
        try:
            done = discard_draft(plan)
        except PublishRefused as exc:
            return refused(exc)
        found = done.diff
        return Response(
            {
                "added": found.added,
                "removed": found.removed,
                "changed": found.changed,
                "skipped": done.skipped,
            }
        )

    def _published(self, done) -> Response:
        version = done.version
        return Response(
            {
                "version": version.number,
                "added": version.added,
                "removed": version.removed,
                "changed": version.changed,
                "tests": [result_data(r) for r in done.test_results],
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=RunTestsSerializer,
        responses={200: RunTestsAnswerSerializer},
        summary="Run the plan's route tests",
    )
    @action(detail=True, methods=["post"], url_path="run-tests")
    def run_tests(self, request: Request, pk=None) -> Response:
        """Every route test of the plan (inactive ones too: they are skipped before a
        publish only), against the draft, the live version or a kept version."""
        plan = self.get_object()
        form = RunTestsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        against = form.validated_data["against"]
        try:
            if against.strip().lower() == "live":
                version, pin = plan.published_version, None  # as calls get it
            else:
                version = view_of(against, plan, name="against")
                if version is DRAFT:
                    pin = pins.draft(plan.pk)
                else:
                    check_kept(plan, version)
                    pin = pins.version(plan.pk, version)
        except PublishRefused as exc:
            return refused(exc, status.HTTP_400_BAD_REQUEST)
        tests = RouteTest.objects.filter(plan=plan).select_related("tenant", "customer", "plan")
        results = route_tests.run(list(tests), pin=pin)
        route_tests.record(results)
        return Response({"against": version, "results": [result_data(r) for r in results]})

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description="Calls at most (default 1000).")],
        responses={200: ImpactAnswerSerializer},
        summary="Replay the plan's sampled calls against its draft",
    )
    @action(detail=True, methods=["get"])
    def impact(self, request: Request, pk=None) -> Response:
        """Replay the plan's latest sampled calls against the live version and the draft,
        now, and count those whose outcome or first trunk would change."""
        plan = self.get_object()
        query = ImpactQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        found = impact.preview(plan, limit=query.validated_data["limit"])
        return Response(
            {
                "replayed": found.replayed,
                "outcome_changed": found.outcome_changed,
                "first_trunk_changed": found.first_trunk_changed,
                "oldest": found.oldest,
                "examples": [
                    {
                        "decision_id": changed.sample.decision_id,
                        "callee": changed.live.callee or changed.sample.request.get("callee", ""),
                        "caller": changed.live.caller or changed.sample.request.get("caller", ""),
                        "what": changed.what,
                        "live": changed.describe(changed.live),
                        "draft": changed.describe(changed.draft),
                    }
                    for changed in found.examples
                ],
            }
        )


# --- Route tests ------------------------------------------------------------------------


class RouteTestSerializer(ScopedModelSerializer):
    """A saved call and what it must get; checked by the model (RouteTest.clean)."""

    tenant = SlugRelatedField(
        slug_field="slug",
        queryset=Tenant.objects.all(),
        required=False,
        help_text="Tenant slug; implied by the plan.",
    )
    plan = serializers.PrimaryKeyRelatedField(
        queryset=RoutingPlan.objects.select_related("tenant"),
        help_text="Routing plan id: the plan whose publishes this test guards.",
        error_messages={"does_not_exist": "No routing plan you can use has id {pk_value}."},
    )
    customer = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects.select_related("tenant"),
        required=False,
        allow_null=True,
        help_text="Customer id: whose call it is (empty: the source address, or the plan).",
        error_messages={"does_not_exist": "No customer you can use has id {pk_value}."},
    )

    class Meta:
        model = RouteTest
        fields = [
            "id",
            "tenant",
            "plan",
            "name",
            "customer",
            "source_ip",
            "caller",
            "callee",
            "at",
            "expect_outcome",
            "expect_code",
            "expect_first_trunk",
            "expect_trunk_order",
            "is_active",
            "last_run_at",
            "last_passed",
            "last_message",
        ]
        read_only_fields = ["last_run_at", "last_passed", "last_message"]
        validators: list = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        plan = attrs.get("plan")
        if plan is not None and "tenant" not in attrs and self.instance is None:
            attrs["tenant"] = plan.tenant  # a tenant user's is theirs anyway (validate)
        return super().validate(attrs)


class RouteTestFilter(filters.FilterSet):
    tenant = filters.CharFilter(field_name="tenant__slug", help_text="Tenant slug.")
    plan = IdFilter(field_name="plan_id", help_text="Routing plan id.")
    customer = IdFilter(field_name="customer_id", help_text="Customer id.")

    class Meta:
        model = RouteTest
        fields = ["tenant", "plan", "customer", "name", "is_active", "last_passed"]


@extend_schema(tags=["versions"])
class RouteTestViewSet(ScopedViewSet):
    """Route tests: saved calls with expectations, run before every publish of their plan
    (and on demand: POST /api/v1/routing-plans/{id}/run-tests)."""

    queryset = RouteTest.objects.select_related("tenant", "plan", "customer")
    serializer_class = RouteTestSerializer
    filterset_class = RouteTestFilter
    search_fields = ["name", "callee", "caller"]
    ordering_fields = ["name", "id", "last_run_at"]


# --- Decisions --------------------------------------------------------------------------


class DecisionSampleSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.slug", read_only=True, allow_null=True)
    plan = serializers.CharField(source="plan.name", read_only=True, allow_null=True)
    request = serializers.DictField(read_only=True, help_text="The call as the engine read it.")
    trunks = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The trunks in order, by name."
    )
    trace = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = DecisionSample
        fields = [
            "decision_id",
            "decided_at",
            "transport",
            "tenant",
            "plan",
            "plan_version",
            "request",
            "outcome",
            "code",
            "reason",
            "trunks",
            "trace",
        ]
        read_only_fields = fields


@extend_schema(
    tags=["versions"],
    parameters=[
        OpenApiParameter(
            "decision_id",
            str,
            OpenApiParameter.PATH,
            description="The decision's id, as Kamailio logs it (rtjson `decision_id`).",
        )
    ],
)
class DecisionViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A sampled routing decision (versions.decisions), looked up by its id: the call,
    the answer, the trunks and the trace. Samples are kept a few days."""

    authentication_classes = USER_AUTHENTICATION
    permission_classes = [IsAuthenticated, HasTenantScope, ModelPermissions]
    queryset = DecisionSample.objects.select_related("tenant", "plan")
    serializer_class = DecisionSampleSerializer
    lookup_field = "decision_id"
    lookup_value_regex = "[0-9A-Za-z._:-]{1,64}"

    def get_queryset(self):
        return scope_queryset(super().get_queryset(), self.request.user)
