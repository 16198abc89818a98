"""The REST API of rate decks: list, import, export and delete decks; the rate of a number.

- `/api/v1/rate-decks` (list, retrieve, delete; `?carrier=<id>`, `?in_force=true`)
- `/api/v1/rate-decks/import` (multipart: file, carrier, effective, currency): 201 with
  the deck, or 400 with every bad row (line, column, message)
- `/api/v1/rate-decks/{id}/export` (text/csv; `?with_effective=1` adds that column)
- `/api/v1/rates?carrier=&number=&at=`: the rate in force for a number (rating.lookup)

Scoped like the rest of the API (ScopedViewSet): another tenant's deck or carrier is
a 404, worded as for one that does not exist. Permissions follow the carrier's
(view to read, change to import and delete), as in the admin.
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

from api.permissions import HasTenantScope
from api.views import USER_AUTHENTICATION, ScopedViewSet
from rating import services
from rating.currencies import currency_problem
from rating.exporting import export_rows
from rating.importing import WHEN_HELP, ImportFailed, import_deck, parse_when
from rating.lookup import rate_for
from rating.models import RateDeck
from rating.rows import money_text
from routing.models import Carrier
from tenants.scoping import scope_queryset

_PERMS = {"GET": "view", "HEAD": "view", "OPTIONS": "view"}


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows):
    writer = csv.writer(_Echo(), lineterminator="\n")
    for row in rows:
        yield writer.writerow(row)


class CarrierPermissions(IsAuthenticated):
    """A carrier's permissions: view to read decks and rates, change to import and delete."""

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        action_name = _PERMS.get(request.method, "change")
        user = request.user
        return user.has_perm(f"routing.{action_name}_carrier") or user.has_perm(
            f"rating.{action_name}_ratedeck"
        )


class RateDeckFilter(filters.FilterSet):
    carrier = filters.NumberFilter(field_name="carrier_id", help_text="Carrier id.")
    in_force = filters.BooleanFilter(method="filter_in_force", help_text="In force now.")

    class Meta:
        model = RateDeck
        fields = ["carrier", "currency", "in_force"]

    def filter_in_force(self, queryset, name, value):
        current = RateDeck.objects.in_force_at(timezone.now()).values("pk")
        return queryset.filter(pk__in=current) if value else queryset.exclude(pk__in=current)


class RateDeckSerializer(serializers.ModelSerializer):
    carrier_name = serializers.CharField(source="carrier.name", read_only=True)
    state = serializers.SerializerMethodField()

    class Meta:
        model = RateDeck
        fields = [
            "id",
            "carrier",
            "carrier_name",
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
    carrier = serializers.IntegerField(help_text="Id of one of your carriers.")
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


class RateDeckViewSet(ScopedViewSet):
    """A carrier's rate decks; a deck is imported whole and deleted whole, never edited."""

    queryset = RateDeck.objects.select_related("carrier")
    serializer_class = RateDeckSerializer
    permission_classes = [CarrierPermissions]
    filterset_class = RateDeckFilter
    search_fields = ["name", "carrier__name"]
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
        carriers = scope_queryset(Carrier.objects.select_related("tenant"), request.user)
        carrier = get_object_or_404(carriers, pk=data["carrier"])
        upload = data["file"]
        try:
            result = import_deck(
                lambda: io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline=""),
                carrier=carrier,
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
    carrier = serializers.IntegerField()
    number = serializers.CharField()
    at = serializers.DateTimeField()
    prefix = serializers.CharField()
    rate = serializers.CharField(help_text="Per minute, in the deck's currency.")
    connect_fee = serializers.CharField()
    initial_increment = serializers.IntegerField()
    next_increment = serializers.IntegerField()
    currency = serializers.CharField()
    deck = serializers.IntegerField()


@extend_schema(
    parameters=[
        OpenApiParameter("carrier", int, required=True),
        OpenApiParameter("number", str, required=True, description="E.164 digits ('+' allowed)."),
        OpenApiParameter("at", str, description=f"{WHEN_HELP}; now when left out."),
    ],
    responses={200: RateAnswerSerializer},
    tags=["rates"],
)
class RateView(APIView):
    """The rate a carrier charges for a number at a time: the longest prefix in force then."""

    authentication_classes = USER_AUTHENTICATION
    permission_classes = [CarrierPermissions, HasTenantScope]

    def get(self, request: Request) -> Response:
        params = request.query_params
        carrier_id, number = params.get("carrier", ""), params.get("number", "").strip()
        problems = {}
        if not carrier_id.isdigit():
            problems["carrier"] = ["A carrier id is required."]
        digits = number.removeprefix("+")
        if not (digits.isascii() and digits.isdigit()):
            problems["number"] = ["Digits of the number, e.g. 33612345678."]
        at = parse_when(params["at"]) if params.get("at") else timezone.now()
        if at is None:
            problems["at"] = [f"Write {WHEN_HELP}."]
        if problems:
            raise ValidationError(problems)
        carriers = scope_queryset(Carrier.objects.all(), request.user)
        if not carriers.filter(pk=int(carrier_id)).exists():
            raise NotFound("No such carrier.")
        match = rate_for(int(carrier_id), digits, at)
        if match is None:
            raise NotFound("This carrier has no rate for this number at that time.")
        return Response(
            {
                "carrier": int(carrier_id),
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
