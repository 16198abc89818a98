"""Serializers of the API: the wire contract of the routing endpoint, and the route table."""

from __future__ import annotations

from copy import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings
from rest_framework.validators import UniqueValidator

from api.parsers import NUL_MESSAGE
from kamailio.rtjson import to_rtjson
from routing import health, services
from routing.models import (
    Carrier,
    Customer,
    CustomerSource,
    DialPrefix,
    RouteTarget,
    RoutingPlan,
    Schedule,
    Trunk,
    TrunkHealth,
)
from routing.resolver import Decision, Route
from routing.rows import RouteRow, TrunkRow, model_fields
from tenants.models import Tenant, TenantSource
from tenants.networks import NetworkError, parse_address
from tenants.scoping import is_tenant_scoped, scope_queryset, user_scope


class SlugRelatedField(serializers.SlugRelatedField):
    """DRF's, refusing a NUL before its lookup: PostgreSQL text cannot hold one (a 500).

    The API's parsers already refuse a NUL in any body; this keeps the lookup safe for
    data that reaches a serializer another way.
    """

    default_error_messages = {"null_characters": NUL_MESSAGE}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("null_characters")
        return super().to_internal_value(data)


# --- The routing request (the Wazo-shaped body Kamailio posts) -------------------------


class StrictCharField(serializers.CharField):
    """A string and only a string: numbers, lists and objects are refused, not coerced."""

    default_error_messages = {
        "invalid": "Must be a string.",
        "surrogates": "Must be valid Unicode text (no lone surrogates).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("surrogates")
        return super().to_internal_value(data)


class SourceIPField(serializers.CharField):
    """An IPv4 or IPv6 address (brackets and IPv4-mapped IPv6 accepted), normalised."""

    default_error_messages = {"invalid": "Must be an IPv4 or IPv6 address."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return str(parse_address(super().to_internal_value(data)))
        except NetworkError:
            self.fail("invalid")


class CallRequestSerializer(serializers.Serializer):
    """The body Kamailio posts for a new call (the request shape of Wazo's router).

    Only the shape is checked here; which field gives the callee and caller is
    kamailio.requests.call_request_from_fields(), shared with the EVAPI bridge.
    """

    event = StrictCharField(max_length=64, help_text='Free text, e.g. "sip-routing".')
    source_ip = SourceIPField(
        help_text="Address the call came from ($si): it names the tenant by its source networks."
    )
    source_port = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=65535, help_text="$sp"
    )
    call_id = StrictCharField(
        max_length=512, help_text="$ci: seeds the weighted order of equal-priority trunks."
    )
    from_name = StrictCharField(max_length=256, help_text="$fn (display name)")
    from_uri = StrictCharField(max_length=1024, help_text="$fu")
    from_tag = StrictCharField(max_length=256, help_text="$ft")
    to_name = StrictCharField(max_length=256, help_text="$tn")
    to_uri = StrictCharField(max_length=1024, help_text="$tu")
    to_tag = StrictCharField(max_length=256, help_text="$tt (empty on a new call)")
    ruri = StrictCharField(max_length=1024, help_text="$ru: its user is the callee when given.")
    caller = StrictCharField(max_length=128, help_text="Overrides the From-URI user.")
    callee = StrictCharField(
        max_length=128, help_text="Overrides the R-URI and To-URI user as the dialled number."
    )
    account = StrictCharField(
        max_length=64,
        help_text="The account header the SBC in front sets (X-Account in the shipped "
        "configs): it names the customer within the tenant.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Absent and null mean the same thing to the request builder.
        return {name: value for name, value in attrs.items() if value is not None}

    @classmethod
    def fast_validated_data(cls, data: Any) -> dict[str, Any] | None:
        """validated_data for a plainly well-formed body, or None to run the serializer.

        Binding a DRF serializer deep-copies its thirteen fields on every request,
        which cost more than the routing decision itself. Every call Kamailio sends
        is a flat object of strings and a port, so this checks exactly that against
        the declared fields' own limits, and accepts only what the serializer would
        accept unchanged (a property test holds the two together). Anything else
        (a wrong type, a coercible port, a NUL, an over-long value) returns None, and
        the serializer then produces its usual 400.
        """
        if not isinstance(data, dict):
            return None
        validated: dict[str, Any] = {}
        for name, field in cls._declared_fields.items():
            if name not in data:
                if field.required:
                    return None
                continue
            value = data[name]
            if value is None:
                if not field.allow_null:
                    return None
                continue
            if isinstance(field, SourceIPField):
                if type(value) is not str or len(value) > field.max_length or "\x00" in value:
                    return None
                try:
                    validated[name] = str(parse_address(value.strip()))
                except NetworkError:
                    return None
            elif isinstance(field, StrictCharField):
                if (
                    type(value) is not str
                    or len(value) > field.max_length
                    or "\x00" in value
                    or not (value.isascii() or _is_utf8_encodable(value))
                ):
                    return None
                validated[name] = value
            elif isinstance(field, serializers.IntegerField):
                if type(value) is not int or not field.min_value <= value <= field.max_value:
                    return None
                validated[name] = value
            else:  # a field this shortcut does not know: let DRF decide
                return None
        return validated


def _is_utf8_encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RoutingAnswerSerializer(serializers.Serializer):
    """For the schema only: `rtjson` is the document Kamailio's rtjson module reads."""

    rtjson = serializers.DictField(
        help_text="version, success, routing (serial|parallel|location), routes; or "
        "success false with the SIP code and reason to reply. Also decision_id, outcome, "
        "tenant and prefix for logs."
    )


class OutcomeEventsAnswerSerializer(serializers.Serializer):
    """For the schema only: what POST /api/v1/kamailio/events took and refused."""

    accepted = serializers.IntegerField(help_text="Events counted.")
    refused = serializers.ListField(
        child=serializers.CharField(), help_text="Why each other event was not counted."
    )


# --- Simulation: the decision with its trace ------------------------------------------


class PrefixRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prefix = serializers.CharField()
    action = serializers.CharField()
    routing_mode = serializers.CharField()
    min_length = serializers.IntegerField(allow_null=True)
    max_length = serializers.IntegerField(allow_null=True)
    description = serializers.CharField()
    is_final = serializers.BooleanField()
    caller_prefix = serializers.CharField(help_text="Callers this route is for (empty: any).")
    caller_pattern = serializers.CharField(
        help_text="RE2 pattern the caller's digits must fully match (empty: none)."
    )
    schedule_id = serializers.IntegerField(
        allow_null=True, help_text="The route's schedule (null: always)."
    )


class RouteSerializer(serializers.Serializer):
    carrier = serializers.CharField()
    trunk = serializers.CharField()
    trunk_id = serializers.IntegerField()
    priority = serializers.IntegerField()
    weight = serializers.IntegerField()
    uri = serializers.CharField()
    dst_uri = serializers.CharField()
    path = serializers.CharField()
    socket = serializers.CharField()
    from_display = serializers.CharField(allow_null=True)
    from_uri = serializers.CharField(allow_null=True)
    to_display = serializers.CharField(allow_null=True)
    to_uri = serializers.CharField(allow_null=True)
    extra_headers = serializers.SerializerMethodField()
    branch_flags = serializers.IntegerField(allow_null=True)
    fr_timer = serializers.IntegerField(allow_null=True)
    fr_inv_timer = serializers.IntegerField(allow_null=True)
    rate = serializers.DecimalField(max_digits=12, decimal_places=6, allow_null=True)
    currency = serializers.CharField()

    def get_extra_headers(self, route: Route) -> list[str]:
        return [f"{name}: {value}" for name, value in route.extra_headers]


class CostLineSerializer(serializers.Serializer):
    carrier = serializers.CharField()
    trunk = serializers.CharField()
    rate_prefix = serializers.CharField(allow_null=True)
    rate = serializers.DecimalField(max_digits=12, decimal_places=6, allow_null=True)
    currency = serializers.CharField()
    limit = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    status = serializers.CharField(help_text="first, later or skipped")
    why = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    """The whole decision for an operator: what matched, what it beat, what was skipped."""

    decision_id = serializers.CharField()
    outcome = serializers.CharField()
    success = serializers.BooleanField()
    code = serializers.IntegerField(help_text="SIP code Kamailio replies when not routed.")
    reason = serializers.CharField()
    tenant = serializers.CharField(source="tenant.slug", allow_null=True)
    customer = serializers.CharField(source="customer.name", allow_null=True)
    plan = serializers.CharField(help_text="The routing plan the call was routed by.")
    caller = serializers.CharField()
    callee = serializers.CharField()
    matched = PrefixRowSerializer(allow_null=True)
    beaten = PrefixRowSerializer(many=True, help_text="Shorter prefixes the match beat.")
    routing = serializers.CharField(allow_null=True)
    routes = RouteSerializer(many=True)
    skipped = serializers.ListField(child=serializers.CharField(), help_text="Unusable targets.")
    costs = CostLineSerializer(many=True, help_text="Least cost: each candidate's rate and fate.")
    sell_rate = serializers.DecimalField(max_digits=12, decimal_places=6, allow_null=True)
    currency = serializers.CharField(help_text="The sell rate's currency (least cost).")
    trace = serializers.ListField(child=serializers.CharField())
    plan_version = serializers.IntegerField(
        allow_null=True,
        help_text="The version of the plan's routes the call was decided by (null: the "
        "routes as saved, the draft of a staged plan).",
    )
    rtjson = serializers.SerializerMethodField()

    def get_rtjson(self, decision: Decision) -> dict[str, Any]:
        return to_rtjson(decision)


class SimulationSerializer(CallRequestSerializer):
    """A routing request from an operator: source_ip is optional, a tenant may be named.

    `tenant` names the table to simulate against: a superuser may name any, a tenant
    user only their own (another slug is an invalid choice).
    """

    source_ip = SourceIPField(required=False, allow_null=True)
    tenant = SlugRelatedField(
        slug_field="slug",
        queryset=Tenant.objects.all(),
        required=False,
        allow_null=True,
        help_text="Tenant slug; without it (superusers only) the source_ip names the tenant.",
    )

    customer = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects.select_related("tenant"),
        required=False,
        allow_null=True,
        help_text="Customer id: simulate as this customer (its plan routes the call).",
    )
    plan = serializers.PrimaryKeyRelatedField(
        queryset=RoutingPlan.objects.select_related("tenant"),
        required=False,
        allow_null=True,
        help_text="Routing plan id: route by this plan, without a customer.",
    )
    at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="The call's time (ISO 8601; default: now, or `as_of`): which scheduled "
        "routes and targets are in force, which rates apply.",
    )
    version = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=20,
        help_text='Read the plan the call reaches as "draft" (its saved routes), "live" (as '
        "calls get it: the default) or a kept version number.",
    )
    as_of = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="Read every staged plan as published at this time (ISO 8601); the call's "
        "time too, unless `at` is given.",
    )

    def validate_version(self, value: str | None) -> str | int | None:
        given = (value or "").strip().lower()
        if given in ("", "live"):
            return None
        if given == "draft":
            return "draft"
        if given.isascii() and given.isdigit() and 0 < int(given) < 2**31:
            return int(given)
        raise serializers.ValidationError('Give "draft", "live" or a version number.')

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs.get("version") is not None and attrs.get("as_of") is not None:
            raise serializers.ValidationError(
                {"as_of": ["Give a version or a time (as_of), not both."]}
            )
        return attrs

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in ("tenant", "customer", "plan"):
            fields[name].queryset = scope_queryset(fields[name].queryset, _user(self))
        return fields


# --- The route table -------------------------------------------------------------------


def _user(serializer: serializers.Serializer):
    request = serializer.context.get("request")
    return getattr(request, "user", None)


def own_tenant(user) -> Tenant | None:
    """The tenant a tenant user is confined to (None for superusers and strangers)."""
    scope = user_scope(user)
    return scope if isinstance(scope, Tenant) else None


def _django_errors(exc: DjangoValidationError) -> dict[str, Any]:
    """A model ValidationError in DRF's shape ("__all__" becomes non_field_errors)."""
    errors = serializers.as_serializer_error(exc)
    if "__all__" in errors:
        errors[api_settings.NON_FIELD_ERRORS_KEY] = errors.pop("__all__")
    return errors


class ScopedModelSerializer(serializers.ModelSerializer):
    """The API side of tenant scoping and model validation, for every route-table resource.

    - Every related field offers only the rows the user may see (tenants.scoping),
      so naming another tenant's row fails like any unknown id ("Invalid pk").
    - A tenant user's rows are always in their tenant (the field is read-only for
      them); a superuser names the tenant, by slug. A row never changes tenant.
    - The model's own validation (field validators, clean(), named constraints) runs
      through full_clean(), so bad values and duplicates are 400s with the model's
      messages, never an IntegrityError.
    """

    nested_fields: tuple[str, ...] = ()

    def build_standard_field(self, field_name, model_field):
        # DRF derives UniqueValidators from single-field constraints with its own
        # wording; full_clean() checks them with the model's message instead.
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        if "validators" in kwargs:
            kwargs["validators"] = [
                v for v in kwargs["validators"] if not isinstance(v, UniqueValidator)
            ]
        return field_class, kwargs

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        user = _user(self)
        for field in fields.values():
            queryset = getattr(field, "queryset", None)
            if queryset is not None and is_tenant_scoped(queryset.model):
                field.queryset = scope_queryset(queryset, user)
        tenant = fields.get("tenant")
        if tenant is not None and not tenant.read_only and own_tenant(user) is not None:
            # Read-only for them, rendered as a superuser sees it: a field that is
            # already read-only (a trunk's, through its carrier) stays as it is.
            fields["tenant"] = serializers.SlugRelatedField(
                slug_field="slug",
                read_only=True,
                source=tenant.source,
                help_text=tenant.help_text,
            )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        model = self.Meta.model
        has_tenant = any(f.name == "tenant" for f in model._meta.fields)
        own = own_tenant(_user(self))
        if has_tenant and self.instance is None and own is not None:
            attrs["tenant"] = own
        changing = has_tenant and self.instance is not None and "tenant" in attrs
        if changing and attrs["tenant"] != self.instance.tenant:
            raise serializers.ValidationError(
                {"tenant": ["A row cannot move to another tenant; create it there instead."]}
            )
        nested = {name: attrs.pop(name) for name in self.nested_fields if name in attrs}
        obj = copy(self.instance) if self.instance is not None else model()
        for name, value in attrs.items():
            setattr(obj, name, value)
        try:
            obj.full_clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_django_errors(exc)) from None
        # clean() may normalise values (e.g. a host's brackets): keep what it kept.
        cleaned = {name: getattr(obj, name) for name in attrs}
        self.validate_nested(obj, nested)
        return {**cleaned, **nested}

    def validate_nested(self, obj, nested: dict[str, Any]) -> None:
        """Check nested rows against the (unsaved) parent `obj`."""

    # Writes go through routing.services, which checks again inside the transaction,
    # saves, and re-checks the tenant of every row it touched.

    def create(self, validated_data: dict[str, Any]):
        row = self.Meta.model(**validated_data)
        self.save_row(row)
        return row

    def update(self, instance, validated_data: dict[str, Any]):
        for name, value in validated_data.items():
            setattr(instance, name, value)
        self.save_row(instance)
        return instance

    def save_row(self, row) -> None:
        try:
            services.save_row(user=_user(self), row=row)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_django_errors(exc)) from None


class TenantSerializer(ScopedModelSerializer):
    sources = serializers.SlugRelatedField(
        slug_field="network",
        many=True,
        read_only=True,
        help_text="Source networks (manage them under tenant-sources).",
    )

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "is_active", "description", "sources"]
        validators: list = []


class TenantSourceSerializer(ScopedModelSerializer):
    tenant = SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())

    class Meta:
        model = TenantSource
        fields = ["id", "tenant", "network", "description"]
        validators: list = []


class CarrierSerializer(ScopedModelSerializer):
    tenant = SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())

    class Meta:
        model = Carrier
        fields = ["id", "tenant", "name", "is_active", "description"]
        validators: list = []


class TrunkHealthSerializer(serializers.ModelSerializer):
    """A trunk's health (routing.health); changed by its outcomes and by operators."""

    status = serializers.ChoiceField(
        choices=health.STATUSES,
        read_only=True,
        help_text="How routing treats the trunk now: healthy, unhealthy (in its "
        "cool-down), half_open (gets a share of calls as probes), forced_up, forced_down.",
    )
    since = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = TrunkHealth
        fields = ["status", "state", "since", "until", "reason", "override"]
        read_only_fields = fields


class TrunkSerializer(ScopedModelSerializer):
    carrier = serializers.PrimaryKeyRelatedField(
        queryset=Carrier.objects.select_related("tenant"), help_text="Carrier id."
    )
    tenant = serializers.CharField(source="carrier.tenant.slug", read_only=True)
    health = serializers.SerializerMethodField(help_text="The trunk's health (read-only).")

    class Meta:
        model = Trunk
        # The declared trunk columns, the carrier as its own field (not its raw id), the
        # health policy (writable) and the health itself (read-only).
        fields = [
            "id",
            "tenant",
            "carrier",
            *(name for name in model_fields(TrunkRow)[1:] if name != "carrier_id"),
            "health_window",
            "health_min_attempts",
            "health_failure_ratio",
            "health_consecutive_failures",
            "health_cooldown",
            "health",
        ]
        validators: list = []

    @extend_schema_field(TrunkHealthSerializer)
    def get_health(self, trunk: Trunk) -> dict[str, Any]:
        try:
            row = trunk.health
        except TrunkHealth.DoesNotExist:
            row = None  # no row: healthy, automatic
        data = TrunkHealthSerializer(row or TrunkHealth(since=None)).data
        data["status"] = health.status(row, timezone.now())
        return data

    def validate_carrier(self, carrier: Carrier) -> Carrier:
        if self.instance is not None and carrier.tenant_id != self.instance.carrier.tenant_id:
            raise serializers.ValidationError(
                "A trunk cannot move to another tenant's carrier; create it there instead."
            )
        return carrier


class RoutingPlanSerializer(ScopedModelSerializer):
    """A routing plan: a named route table of a tenant, used by its customers."""

    tenant = SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())
    prefix_count = serializers.SerializerMethodField(help_text="Routes in the plan.")
    customer_count = serializers.SerializerMethodField(help_text="Customers using it.")

    class Meta:
        model = RoutingPlan
        fields = ["id", "tenant", "name", "description", "prefix_count", "customer_count"]
        validators: list = []

    # Lists annotate the counts in one query; a plan just written counts them itself.
    def get_prefix_count(self, plan: RoutingPlan) -> int:
        counted = getattr(plan, "prefix_count", None)
        return plan.prefixes.count() if counted is None else counted

    def get_customer_count(self, plan: RoutingPlan) -> int:
        counted = getattr(plan, "customer_count", None)
        return plan.customers.count() if counted is None else counted


class CustomerSourceSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerSource
        fields = ["network", "port"]
        validators: list = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs  # checked with the customer, which may not exist yet


class CustomerSerializer(ScopedModelSerializer):
    """A customer and how its calls are recognised (sources, technical prefix, account).

    Writing `sources` replaces them with the list given; omitting it on a PATCH
    leaves them as they are.
    """

    tenant = SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())
    plan = serializers.PrimaryKeyRelatedField(
        queryset=RoutingPlan.objects.select_related("tenant"), help_text="Routing plan id."
    )
    plan_name = serializers.CharField(source="plan.name", read_only=True)
    sources = CustomerSourceSerializer(many=True, required=False, max_length=256)
    nested_fields = ("sources",)

    class Meta:
        model = Customer
        fields = [
            "id",
            "tenant",
            "name",
            "plan",
            "plan_name",
            "is_active",
            "is_default",
            "tech_prefix",
            "account",
            "sources",
            # Inbound number translation (routing.translation).
            "country_code",
            "national_prefix",
            "international_prefix",
            "inbound_callee_rules",
            "inbound_caller_rules",
            "description",
        ]
        validators: list = []

    def create(self, validated_data: dict[str, Any]) -> Customer:
        sources = validated_data.pop("sources", [])
        customer = Customer(**validated_data)
        self.save_customer(customer, sources)
        return customer

    def update(self, instance: Customer, validated_data: dict[str, Any]) -> Customer:
        sources = validated_data.pop("sources", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        self.save_customer(instance, sources)
        return instance

    def save_customer(self, customer: Customer, sources: list[dict[str, Any]] | None) -> None:
        specs = (
            None
            if sources is None
            else [services.SourceSpec(item["network"], item.get("port")) for item in sources]
        )
        try:
            services.save_customer(user=_user(self), customer=customer, sources=specs)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_django_errors(exc)) from None
        except services.SourcesInvalid as exc:
            errors = {i: _django_errors(e) for i, e in exc.errors.items()}
            raise serializers.ValidationError({"sources": errors}) from None
        if hasattr(customer, "_prefetched_objects_cache"):
            customer._prefetched_objects_cache.pop("sources", None)


class ScheduleSerializer(ScopedModelSerializer):
    """A schedule: weekly windows in a time zone and validity dates (routing.schedules)."""

    tenant = SlugRelatedField(slug_field="slug", queryset=Tenant.objects.all())

    class Meta:
        model = Schedule
        fields = [
            "id",
            "tenant",
            "name",
            "timezone",
            "periods",
            "valid_from",
            "valid_until",
            "description",
        ]
        validators: list = []


class RouteTargetSerializer(ScopedModelSerializer):
    trunk = serializers.PrimaryKeyRelatedField(
        queryset=Trunk.objects.select_related("carrier"), help_text="Trunk id."
    )
    trunk_name = serializers.CharField(source="trunk.__str__", read_only=True)
    schedule = serializers.PrimaryKeyRelatedField(
        queryset=Schedule.objects.all(),
        required=False,
        allow_null=True,
        help_text="Schedule id: the target is used only while it is in force (null: always).",
    )

    class Meta:
        model = RouteTarget
        fields = ["trunk", "trunk_name", "priority", "weight", "schedule"]
        validators: list = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs  # checked with the parent route, which may not exist yet


class DialPrefixSerializer(ScopedModelSerializer):
    """A route with its ordered targets, read and written in one request.

    Writing `targets` replaces the route's targets with the list given (matched by
    trunk, so unchanged targets keep their ids and history); omitting it on a PATCH
    leaves them as they are.
    """

    tenant = SlugRelatedField(
        slug_field="slug",
        queryset=Tenant.objects.all(),
        required=False,
        help_text="Tenant slug; implied by the plan (superusers give one or the other).",
    )
    plan = serializers.PrimaryKeyRelatedField(
        queryset=RoutingPlan.objects.select_related("tenant"),
        required=False,
        help_text="Routing plan id; may be left out when the tenant has one plan.",
    )
    schedule = serializers.PrimaryKeyRelatedField(
        queryset=Schedule.objects.all(),
        required=False,
        allow_null=True,
        help_text="Schedule id: the route is used only while it is in force (null: always; "
        "an unscheduled route is the fallback of the scheduled ones).",
    )
    targets = RouteTargetSerializer(many=True, required=False, max_length=64)
    warnings = serializers.SerializerMethodField(
        help_text="What is allowed but probably wrong (a route without targets, a trunk "
        "that strips more digits than the route's numbers have)."
    )
    nested_fields = ("targets",)

    class Meta:
        model = DialPrefix
        fields = [
            "id",
            "tenant",
            "plan",
            *(name for name in model_fields(RouteRow)[1:] if name != "schedule_id"),
            "schedule",
            "targets",
            "warnings",
        ]
        validators: list = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        plan = attrs.get("plan")
        if plan is not None and "tenant" not in attrs and self.instance is None:
            attrs["tenant"] = plan.tenant
        if plan is None and self.instance is None:
            tenant = attrs.get("tenant") or own_tenant(_user(self))
            if tenant is None:
                raise serializers.ValidationError({"plan": ["Name the routing plan (or tenant)."]})
            try:
                attrs["plan"] = services.plan_of(tenant=tenant)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(_django_errors(exc)) from None
        return super().validate(attrs)

    def get_warnings(self, route: DialPrefix) -> list[str]:
        return services.route_warnings(route, [target.trunk for target in route.targets.all()])

    def validate_nested(self, obj: DialPrefix, nested: dict[str, Any]) -> None:
        if "targets" in nested:
            try:
                services.check_targets(obj, _target_specs(nested["targets"]))
            except services.TargetsInvalid as exc:
                raise serializers.ValidationError({"targets": _target_errors(exc)}) from None

    def create(self, validated_data: dict[str, Any]) -> DialPrefix:
        targets = validated_data.pop("targets", [])
        route = DialPrefix(**validated_data)
        self.save_route(route, targets)
        return route

    def update(self, instance: DialPrefix, validated_data: dict[str, Any]) -> DialPrefix:
        targets = validated_data.pop("targets", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        self.save_route(instance, targets)
        return instance

    def save_route(self, route: DialPrefix, targets: list[dict[str, Any]] | None) -> None:
        specs = None if targets is None else _target_specs(targets)
        try:
            services.save_route(user=_user(self), route=route, targets=specs)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(_django_errors(exc)) from None
        except services.TargetsInvalid as exc:
            raise serializers.ValidationError({"targets": _target_errors(exc)}) from None


def _target_specs(items: list[dict[str, Any]]) -> list[services.TargetSpec]:
    return [
        services.TargetSpec(
            trunk_id=item["trunk"].pk,
            schedule_id=getattr(item.get("schedule"), "pk", None),
            **{name: item[name] for name in ("priority", "weight") if name in item},
        )
        for item in items
    ]


def _target_errors(exc: services.TargetsInvalid) -> dict[int, Any]:
    """By position, like DRF's own list errors."""
    return {position: _django_errors(error) for position, error in exc.errors.items()}
