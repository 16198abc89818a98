"""The REST API of rate decks: list, import, export and delete decks; the rate of a number.

A deck is a carrier's (vendor) or a routing plan's or customer's (sell): the same
endpoints take either owner.

- `/api/v1/rate-decks` (list, retrieve, delete; `?carrier=<id>`, `?plan=<id>`,
  `?customer=<id>`, `?kind=vendor|sell`, `?in_force=true`)
- `/api/v1/rate-decks/import` (multipart: file, one of carrier / plan / customer,
  effective, currency): 201 with the deck, or 400 with every bad row (line, column,
  message)
- `/api/v1/rate-decks/{id}/export` (text/csv; `?with_effective=1` adds that column)
- `/api/v1/rates?carrier=&number=&at=`: what a carrier charges for a number;
  `/api/v1/rates?plan=&customer=&number=&at=`: what the customer (else the plan) is
  sold it for (rating.lookup)

Scoped like the rest of the API (ScopedViewSet): another tenant's deck, carrier,
plan or customer is a 404, worded as for one that does not exist. Permissions
follow the owner's (view to read, change to import and delete), as in the admin.
"""

from __future__ import annotations

import csv
import io

import django_filters as filters
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.filters import IdFilter
from api.permissions import HasTenantScope
from api.views import USER_AUTHENTICATION, ScopedViewSet
from rating import services
from rating.currencies import currency_problem
from rating.exporting import export_rows
from rating.importing import WHEN_HELP, ImportFailed, import_deck, parse_when
from rating.lookup import rate_for, sell_rate_for
from rating.models import OWNER_FIELDS, DeckKind, RateDeck
from rating.rows import money_text
from routing.models import Carrier, Customer, RoutingPlan
from tenants.scoping import scope_queryset

_OWNER_MODELS = {"carrier": Carrier, "plan": RoutingPlan, "customer": Customer}

_PERMS = {"GET": "view", "HEAD": "view", "OPTIONS": "view"}


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows):
    writer = csv.writer(_Echo(), lineterminator="\n")
    for row in rows:
        yield writer.writerow(row)


class DeckPermissions(IsAuthenticated):
    """The owner's permissions (a carrier's, plan's or customer's): view to read decks and
    rates, change to import and delete (rating.services.may)."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        return services.may(request.user, _PERMS.get(request.method, "change"))

    def has_object_permission(self, request, view, obj) -> bool:
        action_name = _PERMS.get(request.method, "change")
        return services.may(request.user, action_name, getattr(obj, "owner_field", None))


CarrierPermissions = DeckPermissions  # the name from before sell decks


class RateDeckFilter(filters.FilterSet):
    carrier = IdFilter(field_name="carrier_id", help_text="Carrier id.")
    plan = IdFilter(field_name="plan_id", help_text="Routing plan id.")
    customer = IdFilter(field_name="customer_id", help_text="Customer id.")
    kind = filters.ChoiceFilter(
        choices=DeckKind.choices, method="filter_kind", help_text="vendor or sell."
    )
    in_force = filters.BooleanFilter(method="filter_in_force", help_text="In force now.")

    class Meta:
        model = RateDeck
        fields = ["carrier", "plan", "customer", "kind", "currency", "in_force"]

    def filter_kind(self, queryset, name, value):
        return queryset.of_kind(value)

    def filter_in_force(self, queryset, name, value):
        current = RateDeck.objects.in_force_at(timezone.now()).values("pk")
        return queryset.filter(pk__in=current) if value else queryset.exclude(pk__in=current)


class RateDeckSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="vendor (a carrier's) or sell.")
    owner = serializers.CharField(source="owner_label", read_only=True)
    carrier_name = serializers.CharField(source="carrier.name", read_only=True, allow_null=True)
    plan_name = serializers.CharField(source="plan.name", read_only=True, allow_null=True)
    customer_name = serializers.CharField(source="customer.name", read_only=True, allow_null=True)
    state = serializers.SerializerMethodField()

    class Meta:
        model = RateDeck
        fields = [
            "id",
            "kind",
            "owner",
            "carrier",
            "carrier_name",
            "plan",
            "plan_name",
            "customer",
            "customer_name",
            "name",
            "currency",
            "effective_from",
            "state",
            "rows",
            "created_at",
        ]
        read_only_fields = fields

    def get_state(self, deck: RateDeck) -> str:
        return str(deck.state())


class DeckImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="UTF-8 CSV with a header row (docs/rates.md).")
    carrier = serializers.IntegerField(
        required=False, help_text="A vendor deck: id of one of your carriers."
    )
    plan = serializers.IntegerField(
        required=False, help_text="A sell deck: id of one of your routing plans."
    )
    customer = serializers.IntegerField(
        required=False, help_text="A sell deck: id of one of your customers."
    )
    effective = serializers.CharField(
        required=False, allow_blank=True, help_text=f"{WHEN_HELP}; overrides the file's column."
    )
    currency = serializers.CharField(
        required=False, allow_blank=True, help_text="ISO 4217, when the file has no column."
    )

    def validate_effective(self, value: str):
        if not value.strip():
            return None
        when = parse_when(value)
        if when is None:
            raise serializers.ValidationError(f"Write {WHEN_HELP}.")
        return when

    def validate_currency(self, value: str):
        code = value.strip().upper()
        if code and currency_problem(code):
            raise serializers.ValidationError(currency_problem(code))
        return code or None

    def validate(self, attrs):
        if len([name for name in OWNER_FIELDS if attrs.get(name) is not None]) != 1:
            raise serializers.ValidationError(
                {"owner": "Give exactly one of carrier (a vendor deck), plan or customer."}
            )
        return attrs


class RateDeckViewSet(ScopedViewSet):
    """Rate decks of carriers, plans and customers; imported whole, deleted whole, never edited."""

    queryset = RateDeck.objects.select_related("carrier", "plan", "customer")
    serializer_class = RateDeckSerializer
    permission_classes = [DeckPermissions]
    filterset_class = RateDeckFilter
    search_fields = ["name", "carrier__name", "plan__name", "customer__name"]
    ordering_fields = ["effective_from", "id"]
    http_method_names = ["get", "post", "delete", "head", "options"]

    def create(self, request, *args, **kwargs):  # decks come from import/
        return Response(
            {"detail": "Import a deck with POST /api/v1/rate-decks/import."},
            status=status.HTTP_405_METHOD_NOT_ALLOWED,
        )

    def perform_destroy(self, instance: RateDeck) -> None:
        services.delete_deck(user=self.request.user, deck=instance)

    @extend_schema(
        request={"multipart/form-data": DeckImportSerializer}, responses={201: RateDeckSerializer}
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[MultiPartParser, FormParser],
    )
    def import_deck(self, request: Request) -> Response:
        form = DeckImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        field = next(name for name in OWNER_FIELDS if data.get(name) is not None)
        if not services.may(request.user, "change", field):
            self.permission_denied(request)
        owners = scope_queryset(_OWNER_MODELS[field].objects.select_related("tenant"), request.user)
        owner = get_object_or_404(owners, pk=data[field])
        upload = data["file"]
        try:
            result = import_deck(
                lambda: io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline=""),
                **{field: owner},
                effective_from=data.get("effective"),
                currency=data.get("currency"),
                name=upload.name,
                user=request.user,
            )
        except ImportFailed as failed:
            errors = [
                {"line": e.line, "column": e.column, "message": e.message} for e in failed.errors
            ]
            return Response(
                {"detail": "Nothing was imported.", "errors": errors, "more": failed.more},
                status=status.HTTP_400_BAD_REQUEST,
            )
        body = {**RateDeckSerializer(result.deck).data, "imported": result.rows}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "text/csv"): str})
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk=None) -> StreamingHttpResponse:
        deck = self.get_object()
        with_effective = request.query_params.get("with_effective", "") in ("1", "true", "yes")
        response = StreamingHttpResponse(
            _csv_lines(export_rows(deck, with_effective=with_effective)),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="rate-deck-{deck.pk}.csv"'
        return response


class RateAnswerSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="vendor (a carrier's rate) or sell.")
    carrier = serializers.IntegerField(required=False)
    plan = serializers.IntegerField(required=False, allow_null=True)
    customer = serializers.IntegerField(required=False, allow_null=True)
    number = serializers.CharField()
    at = serializers.DateTimeField()
    prefix = serializers.CharField()
    rate = serializers.CharField(help_text="Per minute, in the deck's currency.")
    connect_fee = serializers.CharField()
    initial_increment = serializers.IntegerField()
    next_increment = serializers.IntegerField()
    currency = serializers.CharField()
    deck = serializers.IntegerField()


def _id_param(params, name: str, problems: dict) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit():
        problems[name] = [f"A {name} id."]
        return None
    return int(text)


@extend_schema(
    parameters=[
        OpenApiParameter("carrier", int, description="What this carrier charges (vendor)."),
        OpenApiParameter("plan", int, description="What this plan's customers pay (sell)."),
        OpenApiParameter(
            "customer",
            int,
            description="What this customer pays (sell): its own deck, else its plan's "
            "(`plan`, or the customer's plan when left out).",
        ),
        OpenApiParameter("number", str, required=True, description="E.164 digits ('+' allowed)."),
        OpenApiParameter("at", str, description=f"{WHEN_HELP}; now when left out."),
    ],
    responses={200: RateAnswerSerializer},
    tags=["rates"],
)
class RateView(APIView):
    """The rate of a number at a time, the longest prefix in force then: what a carrier
    charges (`carrier=`), or what a customer or plan is sold it for (`plan=`, `customer=`)."""

    authentication_classes = USER_AUTHENTICATION
    permission_classes = [DeckPermissions, HasTenantScope]

    def get(self, request: Request) -> Response:
        params = request.query_params
        problems: dict[str, list[str]] = {}
        carrier_id = _id_param(params, "carrier", problems)
        plan_id = _id_param(params, "plan", problems)
        customer_id = _id_param(params, "customer", problems)
        given = [n for n in OWNER_FIELDS if params.get(n, "").strip()]
        if not given:
            problems["carrier"] = ["A carrier id, or a plan or customer id for a sell rate."]
        elif "carrier" in given and len(given) > 1:
            problems["carrier"] = ["A carrier (vendor rate) or a plan/customer (sell rate)."]
        number = params.get("number", "").strip()
        digits = number.removeprefix("+")
        if not (digits.isascii() and digits.isdigit()):
            problems["number"] = ["Digits of the number, e.g. 33612345678."]
        at = parse_when(params["at"]) if params.get("at") else timezone.now()
        if at is None:
            problems["at"] = [f"Write {WHEN_HELP}."]
        if problems:
            raise ValidationError(problems)
        user = request.user
        if carrier_id is not None:
            if not scope_queryset(Carrier.objects.all(), user).filter(pk=carrier_id).exists():
                raise NotFound("No such carrier.")
            match = rate_for(carrier_id, digits, at)
            owner = {"kind": DeckKind.VENDOR.value, "carrier": carrier_id}
            missing = "This carrier has no rate for this number at that time."
        else:
            if customer_id is not None:
                customers = scope_queryset(Customer.objects.all(), user)
                customer_plan = customers.filter(pk=customer_id).values_list("plan_id", flat=True)
                if not customer_plan:
                    raise NotFound("No such customer.")
                plan_id = plan_id if plan_id is not None else customer_plan[0]
            if plan_id is not None:
                plans = scope_queryset(RoutingPlan.objects.all(), user)
                if not plans.filter(pk=plan_id).exists():
                    raise NotFound("No such routing plan.")
            match = sell_rate_for(plan_id=plan_id, customer_id=customer_id, digits=digits, at=at)
            owner = {"kind": DeckKind.SELL.value, "plan": plan_id, "customer": customer_id}
            missing = "No sell rate for this number at that time."
        if match is None:
            raise NotFound(missing)
        return Response(
            {
                **owner,
                "number": digits,
                "at": at,
                "prefix": match.prefix,
                "rate": money_text(match.rate),
                "connect_fee": money_text(match.connect_fee),
                "initial_increment": match.initial_increment,
                "next_increment": match.next_increment,
                "currency": match.currency,
                "deck": match.deck_id,
            }
        )
