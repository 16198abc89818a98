"""The REST API of blocklists and their entries (docs/blocklists.md).

- `/api/v1/blocklists` (list, create, retrieve, update, delete; `?kind=`, `?customer=`,
  `?is_active=`): the lists of the user's tenant;
- `/api/v1/blocklists/{id}/import` (multipart: `file`, `replace`): 200 with the counts,
  or 400 with every bad line (`errors: [{line, message}]`), nothing written;
- `/api/v1/blocklist-entries` (`?list=<id>`, `?value=`, `?search=`): entries one by one.

Scoped like the rest of the API (ScopedViewSet): another tenant's list or entry is a
404 worded as for one that does not exist, and naming another tenant's list or
customer in a write is refused like an unknown id. Writes go through
blocklists.services (the tenant rule, full_clean, the change log).
"""

from __future__ import annotations

import io

import django_filters as filters
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from api.filters import IdFilter
from api.serializers import ScopedModelSerializer, SlugRelatedField, _django_errors, _user
from api.views import ScopedViewSet
from blocklists import services
from blocklists.importing import ImportFailed, import_entries
from blocklists.models import Blocklist, BlocklistEntry, Kind
from routing.models import Customer
from tenants.models import Tenant


class BlocklistSerializer(ScopedModelSerializer):
    tenant = SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())
    customer = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects.select_related("tenant"),
        required=False,
        allow_null=True,
        help_text="Customer id: the list applies to that customer's calls only.",
    )

    class Meta:
        model = Blocklist
        fields = [
            "id",
            "tenant",
            "customer",
            "name",
            "kind",
            "reply_code",
            "reply_reason",
            "is_active",
            "description",
            "entries_count",
            "updated_at",
        ]
        read_only_fields = ["entries_count", "updated_at"]

    def save_row(self, row: Blocklist) -> None:
        try:
            services.save_list(user=_user(self), blocklist=row)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_django_errors(exc)) from None


class BlocklistEntrySerializer(ScopedModelSerializer):
    list = serializers.PrimaryKeyRelatedField(
        queryset=Blocklist.objects.select_related("tenant"), help_text="Blocklist id."
    )

    class Meta:
        model = BlocklistEntry
        fields = ["id", "list", "value", "match"]

    def save_row(self, row: BlocklistEntry) -> None:
        try:
            services.save_entry(user=_user(self), entry=row)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_django_errors(exc)) from None


class BlocklistFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=Kind.choices)
    customer = IdFilter(field_name="customer_id", help_text="Customer id.")

    class Meta:
        model = Blocklist
        fields = ["kind", "customer", "is_active"]


class EntryFilter(filters.FilterSet):
    list = IdFilter(field_name="list_id", help_text="Blocklist id.")
    value = filters.CharFilter(field_name="value", help_text="Exactly this value.")

    class Meta:
        model = BlocklistEntry
        fields = ["list", "value", "match"]


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="One value per line (a prefix ends with *), or CSV with a 'value' column."
    )
    replace = serializers.BooleanField(
        default=False, help_text="Make the list exactly the file (entries not in it are deleted)."
    )


class ImportAnswerSerializer(serializers.Serializer):
    read = serializers.IntegerField(help_text="Entries in the file.")
    total = serializers.IntegerField(help_text="Entries in the list afterwards.")
    replaced = serializers.BooleanField()


class BlocklistViewSet(ScopedViewSet):
    """Blocklists of caller numbers, callee numbers or source networks; their matches are
    refused with the list's SIP code and reason before routing."""

    queryset = Blocklist.objects.select_related("tenant", "customer")
    serializer_class = BlocklistSerializer
    filterset_class = BlocklistFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "id", "entries_count"]

    def perform_destroy(self, instance: Blocklist) -> None:
        services.delete_list(user=self.request.user, blocklist=instance)

    @extend_schema(
        request={"multipart/form-data": ImportSerializer}, responses={200: ImportAnswerSerializer}
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="import",
        parser_classes=[MultiPartParser, FormParser],
    )
    def import_entries(self, request: Request, pk=None) -> Response:
        blocklist = self.get_object()  # scoped: another tenant's list is a 404
        if not request.user.has_perm("blocklists.add_blocklistentry"):
            self.permission_denied(request)
        form = ImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload, replace = form.validated_data["file"], form.validated_data["replace"]
        if replace and not request.user.has_perm("blocklists.delete_blocklistentry"):
            self.permission_denied(request, "Replacing deletes entries; you may not delete them.")
        try:
            result = import_entries(
                lambda: io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline=""),
                blocklist=blocklist,
                replace=replace,
                user=request.user,
                source=upload.name,
            )
        except ImportFailed as failed:
            errors = [{"line": e.line, "message": e.message} for e in failed.errors]
            return Response(
                {"detail": "Nothing was imported.", "errors": errors, "more": failed.more},
                status=status.HTTP_400_BAD_REQUEST,
            )
        except UnicodeDecodeError:
            return Response(
                {
                    "detail": "Nothing was imported.",
                    "errors": [{"line": 0, "message": "not UTF-8"}],
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response({"read": result.read, "total": result.total, "replaced": replace})


class BlocklistEntryViewSet(ScopedViewSet):
    """Entries of blocklists, one by one (a large list is imported instead)."""

    queryset = BlocklistEntry.objects.select_related("list")
    serializer_class = BlocklistEntrySerializer
    filterset_class = EntryFilter
    search_fields = ["value"]
    ordering_fields = ["value", "id"]

    def perform_destroy(self, instance: BlocklistEntry) -> None:
        services.delete_entry(user=self.request.user, entry=instance)
