"""Views of the API: the Kamailio routing endpoint, the simulator and the route-table API."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
from typing import Any

from django.core.handlers.wsgi import LimitedStream
from django.db import DatabaseError, IntegrityError, connection
from django.db.models import Count, Prefetch
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import filters, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from api import filters as api_filters
from api.authentication import KamailioTokenAuthentication, UserTokenAuthentication
from api.parsers import BoundedJSONParser
from api.permissions import HasKamailioToken, HasTenantScope, ModelPermissions, SuperuserWrites
from api.serializers import (
    CallRequestSerializer,
    CarrierSerializer,
    CustomerSerializer,
    DecisionSerializer,
    DialPrefixSerializer,
    OutcomeEventsAnswerSerializer,
    RoutingAnswerSerializer,
    RoutingPlanSerializer,
    ScheduleSerializer,
    SimulationSerializer,
    TenantSerializer,
    TenantSourceSerializer,
    TrunkSerializer,
)
from kamailio import events as outcome_events
from kamailio.requests import CallFieldsError, call_request_from_fields
from kamailio.rtjson import encode, failure_decision, failure_of, to_rtjson
from outcomes import ingest
from routing import deadline, service, services
from routing.metrics import observe_decision
from routing.models import (
    Carrier,
    Customer,
    DialPrefix,
    RouteTarget,
    RoutingPlan,
    Schedule,
    Trunk,
)
from routing.resolver import CallRequest, Decision, Outcome
from routing.simulation import SimulationRefused, simulate, simulation_target
from tenants.models import Tenant, TenantSource
from tenants.scoping import scope_queryset
from versions import pins

logger = logging.getLogger("routing.api")


class LengthRequired(APIException):
    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = (
        "A chunked body needs a server that ends its input (gunicorn does); "
        "send a Content-Length instead."
    )
    default_code = "length_required"


def read_chunked_body(request, *, max_bytes: int) -> None:
    """Make a chunked body readable as if it had come with a Content-Length.

    Django reads CONTENT_LENGTH bytes, so a chunked request (no Content-Length) reads as
    empty. A server that de-chunks the body and marks the end of its input
    (`wsgi.input_terminated`, as gunicorn does) lets us read it to the end; without
    that mark the end cannot be found safely, so it is a 411.
    """
    meta = request.META
    if "chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        return
    if not meta.get("wsgi.input_terminated"):
        raise LengthRequired()
    body = meta["wsgi.input"].read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ParseError(f"Request body too large: at most {max_bytes} bytes.")
    meta["CONTENT_LENGTH"] = str(len(body))
    request._stream = LimitedStream(io.BytesIO(body), len(body))


def call_request(fields: dict[str, Any], *, tenant: str | None = None) -> CallRequest:
    """The CallRequest of validated fields, or a DRF ValidationError (400) naming the field."""
    try:
        return call_request_from_fields(fields, tenant=tenant)
    except CallFieldsError as exc:
        raise ValidationError({name: [message] for name, message in exc.errors.items()}) from None


@extend_schema(
    request={"application/json": CallRequestSerializer},
    responses={200: RoutingAnswerSerializer},
    examples=[
        OpenApiExample(
            "New call",
            request_only=True,
            value={
                "event": "sip-routing",
                "source_ip": "192.0.2.7",
                "source_port": 5060,
                "call_id": "a84b4c76e66710@pbx",
                "from_name": "Alice",
                "from_uri": "sip:+33123456789@pbx.example.net",
                "from_tag": "1928301774",
                "to_name": "",
                "to_uri": "sip:+33612345678@sbc.example.net",
                "to_tag": "",
                "ruri": "sip:+33612345678@sbc.example.net",
            },
        )
    ],
    summary="Route one call (for Kamailio)",
    tags=["kamailio"],
)
class RtjsonView(APIView):
    """Kamailio posts each new call here and routes it by the rtjson document it gets back.

    A call that is not routed (no route, reject, unknown source, inactive tenant) is
    still a 200, with `success: false` and the SIP code and reason to reply. A body
    that is not a routing request is a 400; a bad token 401/403. If the engine fails,
    the answer is still a 200 whose rtjson carries the failure Kamailio relays (503
    when the database is unavailable, 500 otherwise), the same document the EVAPI
    bridge sends: both come from kamailio.rtjson.

    The answer leaves within settings.ROUTING_DECISION_DEADLINE_MS of the request's
    start: a database call still waiting then (a hung database) is interrupted
    (routing.deadline.database_deadline) and the call gets 503 "Routing Database
    Unavailable". With the compiled table a decision reads no database, and the
    token check serves known tokens while the database fails (api.authentication).
    """

    authentication_classes = [KamailioTokenAuthentication]
    permission_classes = [HasKamailioToken]
    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]
    throttle_classes: list = []

    started = 0.0

    def dispatch(self, request, *args: Any, **kwargs: Any) -> HttpResponse:
        self.started = time.perf_counter()
        with deadline.database_deadline(deadline.decision_deadline()):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        read_chunked_body(request._request, max_bytes=BoundedJSONParser.max_bytes)
        super().initial(request, *args, **kwargs)

    def post(self, request: Request) -> HttpResponse:
        try:
            fields = CallRequestSerializer.fast_validated_data(request.data)
            if fields is None:
                serializer = CallRequestSerializer(data=request.data)
                serializer.is_valid(raise_exception=True)
                fields = serializer.validated_data
            call = call_request(fields)
        except ValidationError:
            self.observe(Outcome.INVALID)
            raise
        decision: Decision = service.decide(call, transport="http")
        self.observe(decision.outcome)
        return answer(decision)

    def observe(self, outcome: Outcome) -> None:
        observe_decision("http", str(outcome), time.perf_counter() - self.started)

    def handle_exception(self, exc: Exception) -> HttpResponse:
        if isinstance(exc, APIException):
            return super().handle_exception(exc)
        # The engine failed (the database, or a bug): Kamailio must still get an
        # answer it can relay at once, not a 500 page it cannot parse.
        failure = failure_of(exc)
        if isinstance(exc, DatabaseError):
            # Interrupted mid-query, or broken: reconnect on the next request instead
            # of letting Django health-check a hung socket after this answer.
            with contextlib.suppress(DatabaseError):
                connection.close()
        logger.exception("routing engine error; answering %d to Kamailio", failure.code)
        self.observe(Outcome.ERROR)
        return answer(failure_decision(failure, repr(exc)))


def answer(decision: Decision) -> HttpResponse:
    """The 200 carrying `decision` as `{"rtjson": ...}`, encoded exactly as over EVAPI."""
    body = b'{"rtjson":%s}' % encode(to_rtjson(decision))
    return HttpResponse(body, content_type="application/json")


EVENTS_MAX_BYTES = 1024 * 1024  # a batch of a few thousand events


@extend_schema(
    request={
        "application/json": {
            "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
            "description": "One outcome event or an array of them (docs/outcomes.md).",
        }
    },
    responses={202: OutcomeEventsAnswerSerializer},
    examples=[
        OpenApiExample(
            "A branch attempt",
            request_only=True,
            value={
                "event": "sip-outcome",
                "kind": "attempt",
                "decision_id": "0123456789abcdef0123456789abcdef",
                "tenant": "acme",
                "route": 0,
                "trunk_id": 12,
                "prefix": "33",
                "code": 200,
                "pdd_ms": 1200,
                "answer_ms": 5300,
                "at": 1764449000.25,
            },
        )
    ],
    summary="Report call outcomes (for Kamailio)",
    tags=["kamailio"],
)
class OutcomeEventsView(APIView):
    """Kamailio posts outcome events here, fire and forget (docs/outcomes.md).

    One event or a JSON array of events. The answer is a 202 as soon as the events are
    counted in this process's aggregator (written to the database within a second),
    with how many were taken and why the others were not; a body that is not JSON, or
    whose every event is malformed, is a 400 naming the first reason. Never a 5xx for
    an event: the database is not read on this path.
    """

    authentication_classes = [KamailioTokenAuthentication]
    permission_classes = [HasKamailioToken]
    parser_classes: list = []  # the body is read as bytes by kamailio.events
    renderer_classes = [JSONRenderer]
    throttle_classes: list = []

    def post(self, request: Request) -> Response:
        aggregator = ingest.shared()
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > EVENTS_MAX_BYTES:
            aggregator.refuse("malformed")
            raise ParseError(f"Request body missing its length or over {EVENTS_MAX_BYTES} bytes.")
        batch = outcome_events.parse_batch(request._request.body)
        if isinstance(batch, outcome_events.Malformed):
            aggregator.refuse("malformed")
            raise ParseError(batch.reason)
        accepted, refused = 0, []
        for event in batch:
            if isinstance(event, outcome_events.Malformed):
                reason = aggregator.refuse("malformed")
                refused.append(f"malformed: {event.reason}")
            elif isinstance(event, outcome_events.NotOutcome):
                refused.append(aggregator.refuse("not an outcome event"))
            elif (reason := aggregator.add(event)) is not None:
                refused.append(reason)
            else:
                accepted += 1
        if not accepted and refused and all(r.startswith("malformed") for r in refused):
            raise ParseError(refused[0])
        return Response({"accepted": accepted, "refused": refused}, status=202)


# People (scripts with an API token from /api/v1/auth/token, stored as a digest and
# expiring, or the browsable API with a session). Token first, so an anonymous
# request gets 401 with `WWW-Authenticate: Token`, not a bare 403.
USER_AUTHENTICATION = [UserTokenAuthentication, SessionAuthentication]


# --- Simulation ------------------------------------------------------------------------


@extend_schema(
    request=SimulationSerializer,
    responses={200: DecisionSerializer},
    summary="Try a call against a route table",
    tags=["simulate"],
)
class SimulateView(APIView):
    """Route a call as Kamailio would, and show why: matched prefix, beaten prefixes,
    skipped targets, routes, trace and the rtjson document. Nothing is sent anywhere.

    The same rules as the admin's simulator (routing.simulation): a source IP or a
    tenant, not both; without either, a tenant user's own tenant. A tenant user
    decides against their own table only: another tenant's source IP gets the same
    answer as an unknown one (outcome forbidden, 403), naming no tenant.

    `version` reads the plan the call reaches as its draft or a kept version, `as_of`
    every staged plan as published at that time; a version that cannot be read is a 400.
    """

    authentication_classes = USER_AUTHENTICATION
    permission_classes = [IsAuthenticated, HasTenantScope]

    def post(self, request: Request) -> Response:
        serializer = SimulationSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        customer, plan = fields.pop("customer", None), fields.pop("plan", None)
        try:
            target = simulation_target(
                user=request.user,
                source_ip=fields.get("source_ip"),
                tenant=fields.pop("tenant", None),
                customer=customer,
                plan=plan,
            )
        except SimulationRefused as exc:
            raise ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]}) from None
        version, as_of = fields.pop("version", None), fields.pop("as_of", None)
        at = fields.pop("at", None) or as_of
        call = dataclasses.replace(
            call_request(fields, tenant=target.tenant.slug if target.tenant else None),
            customer=target.customer,
            plan=target.plan,
            at=at,
        )
        plan_id = plan.pk if plan is not None else customer.plan_id if customer else None
        pin = pins.for_simulation(routes=version, when=as_of, plan_id=plan_id)
        try:
            simulation = simulate(call, user=request.user, pin=pin)
        except SimulationRefused as exc:
            raise ValidationError({"as_of" if as_of else "version": [str(exc)]}) from None
        return Response(DecisionSerializer(simulation.decision).data)


# --- The route table ---------------------------------------------------------------------


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class ScopedViewSet(viewsets.ModelViewSet):
    """The one place the REST API applies tenant scoping to what a user can reach.

    Rows outside the user's scope are not found (404), whatever the method; the
    serializers scope the rows a write may refer to.
    """

    authentication_classes = USER_AUTHENTICATION
    permission_classes = [IsAuthenticated, ModelPermissions]
    filter_backends = [DjangoFilterBackend, filters.SearchFilter, filters.OrderingFilter]
    pagination_class = Pagination

    def get_queryset(self):
        return scope_queryset(super().get_queryset(), self.request.user)

    def perform_create(self, serializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer) -> None:
        self._save(serializer)

    def _save(self, serializer) -> None:
        try:
            serializer.save()
        except IntegrityError as exc:  # a concurrent write won the race past full_clean()
            logger.warning("integrity error on %s: %s", self.basename, exc)
            raise Conflict("This change conflicts with another row; reload and retry.") from None

    def perform_destroy(self, instance) -> None:
        try:
            services.delete_row(user=self.request.user, row=instance)
        except services.InUse as exc:
            raise Conflict(str(exc)) from None


class TenantViewSet(ScopedViewSet):
    """Tenants: a tenant user reads their own; superusers manage them."""

    queryset = Tenant.objects.prefetch_related("sources")
    serializer_class = TenantSerializer
    permission_classes = [*ScopedViewSet.permission_classes, SuperuserWrites]
    filterset_class = api_filters.TenantFilter
    search_fields = ["name", "slug", "description"]
    ordering_fields = ["name", "slug", "id"]


class TenantSourceViewSet(ScopedViewSet):
    """Source networks: they decide whose calls are whose, so only superusers edit them."""

    queryset = TenantSource.objects.select_related("tenant")
    serializer_class = TenantSourceSerializer
    permission_classes = [*ScopedViewSet.permission_classes, SuperuserWrites]
    filterset_class = api_filters.TenantSourceFilter
    search_fields = ["network", "description", "tenant__name"]
    ordering_fields = ["network", "id"]


class CarrierViewSet(ScopedViewSet):
    queryset = Carrier.objects.select_related("tenant")
    serializer_class = CarrierSerializer
    filterset_class = api_filters.CarrierFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "id"]


class TrunkViewSet(ScopedViewSet):
    queryset = Trunk.objects.select_related("carrier__tenant", "health")
    serializer_class = TrunkSerializer
    filterset_class = api_filters.TrunkFilter
    search_fields = ["name", "host", "carrier__name"]
    ordering_fields = ["name", "host", "id"]


class RoutingPlanViewSet(ScopedViewSet):
    """Routing plans (named route tables), with how many routes and customers use each."""

    # Aggregation drops Meta.ordering: order explicitly, so pages are stable.
    queryset = (
        RoutingPlan.objects.select_related("tenant")
        .annotate(
            prefix_count=Count("prefixes", distinct=True),
            customer_count=Count("customers", distinct=True),
        )
        .order_by("tenant__name", "name")
    )
    serializer_class = RoutingPlanSerializer
    filterset_class = api_filters.RoutingPlanFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "id"]


class CustomerViewSet(ScopedViewSet):
    """Customers with their recognition rules (sources nested)."""

    queryset = Customer.objects.select_related("tenant", "plan").prefetch_related("sources")
    serializer_class = CustomerSerializer
    filterset_class = api_filters.CustomerFilter
    search_fields = ["name", "description", "account", "tech_prefix"]
    ordering_fields = ["name", "id"]


class ScheduleViewSet(ScopedViewSet):
    """Schedules (time windows and validity dates) that routes and targets name."""

    queryset = Schedule.objects.select_related("tenant").order_by("tenant__name", "name")
    serializer_class = ScheduleSerializer
    filterset_class = api_filters.ScheduleFilter
    search_fields = ["name", "periods", "description"]
    ordering_fields = ["name", "id"]


class DialPrefixViewSet(ScopedViewSet):
    """Routes with their targets (trunk, priority, weight) nested."""

    queryset = DialPrefix.objects.select_related("tenant").prefetch_related(
        Prefetch("targets", RouteTarget.objects.select_related("trunk__carrier"))
    )
    serializer_class = DialPrefixSerializer
    filterset_class = api_filters.DialPrefixFilter
    search_fields = ["prefix", "caller_prefix", "description"]
    ordering_fields = ["prefix", "caller_prefix", "id"]
