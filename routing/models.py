"""The route table: carriers, their trunks, dial prefixes and their ordered targets."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from routing import schedules, validators
from tenants.fields import NetworkField
from tenants.models import Tenant


class Transport(models.TextChoices):
    UDP = "udp", "UDP"
    TCP = "tcp", "TCP"
    TLS = "tls", "TLS"


class Action(models.TextChoices):
    ROUTE = "route", "Route to trunks"
    LOCATION = "location", "Local users (location service)"
    REJECT = "reject", "Reject"


class RoutingMode(models.TextChoices):
    SERIAL = "serial", "Serial (failover)"
    PARALLEL = "parallel", "Parallel (ring all)"


class Strategy(models.TextChoices):
    FIXED = "fixed", "Fixed order (priority, then weight)"
    LCR = "lcr", "Least cost: its targets, cheapest vendor first"
    LCR_ALL = "lcr_all", "Least cost: every trunk of the tenant, cheapest first"


class NumberFormat(models.TextChoices):
    """How a trunk's carrier wants numbers written (routing.translation.NumberFormat)."""

    AS_ROUTED = "", "As routed (unchanged)"
    E164 = "e164", "E.164 digits: 33612345678"
    PLUS = "plus", "E.164 with +: +33612345678"
    INTERNATIONAL = "international", "International prefix: 0033612345678"
    NATIONAL = "national", "National in the trunk's country: 0612345678"


RULES_HELP = (
    "Ordered rules, one per line: PATTERN => REPLACEMENT, e.g. ^0044(\\d+)$ => 44\\1. "
    "The first rule whose pattern is found applies (like Kamailio's dialplan) and replaces "
    "what it matched; lines starting with # are comments. Patterns are RE2 syntax (no "
    "back-references or look-around, so no pattern can slow a call down); a replacement is "
    "digits, a leading + and groups \\1 to \\9."
)


def _rules(help_text: str):
    return models.TextField(
        blank=True,
        validators=[validators.validate_translation_rules],
        help_text=f"{help_text} {RULES_HELP}",
    )


def _money(**options):
    """A rate per minute or a margin in the deck's currency (6 decimals, as decks)."""
    return models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        **options,
    )


class MarginFields(models.Model):
    """The margin guard of least-cost routing, on a plan and (overriding it) a route.

    A vendor is skipped when its rate for the number is above the customer's sell
    rate less `margin_percent` percent, or less `margin_absolute`, or above
    `max_cost` (which needs no sell rate). Empty: no such limit.
    """

    margin_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Least-cost routing skips vendors costing more than the sell rate less "
        "this percentage (e.g. 10).",
    )
    margin_absolute = _money(
        help_text="Skip vendors costing more than the sell rate less this amount per minute."
    )
    max_cost = _money(
        help_text="Skip vendors costing more than this per minute, whatever the sell rate."
    )

    class Meta:
        abstract = True


class Carrier(models.Model):
    """An upstream provider of a tenant: the company that terminates its calls."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="carriers")
    name = models.CharField(max_length=100, help_text="Unique within the tenant.")
    is_active = models.BooleanField(
        default=True,
        help_text="Untick to take every trunk of this carrier out of routing at once.",
    )
    description = models.TextField(blank=True)

    history = HistoricalRecords()

    tenant_path = "tenant"

    class Meta:
        ordering = ["tenant__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="carrier_name_unique_per_tenant",
                violation_error_message="This tenant already has a carrier with this name.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Trunk(models.Model):
    """One way into a carrier: where to send the INVITE and how to dress it."""

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="trunks")
    name = models.CharField(max_length=100, help_text="Unique within the carrier.")
    host = models.CharField(
        max_length=253,
        validators=[validators.validate_host],
        help_text="The carrier's SIP host name or IP address; it becomes the R-URI host.",
    )
    port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="SIP port of the carrier; empty means the transport's default (5060/5061).",
    )
    transport = models.CharField(
        max_length=3,
        choices=Transport.choices,
        default=Transport.UDP,
        help_text="Transport to reach the carrier; TCP and TLS add ;transport= to the R-URI.",
    )
    outbound_proxy = models.CharField(
        max_length=255,
        blank=True,
        validators=[validators.validate_sip_uri],
        help_text="Optional SIP URI to send the request to instead of the R-URI host "
        "(rtjson dst_uri), e.g. sip:sbc.example.net:5060.",
    )
    socket = models.CharField(
        max_length=100,
        blank=True,
        validators=[validators.validate_socket],
        help_text="Optional local Kamailio socket to send from, e.g. udp:192.0.2.10:5060.",
    )
    path = models.CharField(
        max_length=255,
        blank=True,
        validators=[validators.validate_no_line_breaks],
        help_text="Optional Path vector for the branch (rtjson path).",
    )
    tech_prefix = models.CharField(
        max_length=16,
        blank=True,
        validators=[validators.validate_tech_prefix],
        help_text="Digits the carrier wants in front of the number (e.g. an account code "
        "such as 1234#). Added after stripping.",
    )
    strip_digits = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(15)],
        help_text="How many leading digits to remove from the dialled number before "
        "sending it (e.g. 2 turns 33612345678 into 612345678).",
    )
    from_display = models.CharField(
        verbose_name="From display name",
        max_length=100,
        blank=True,
        validators=[validators.validate_no_line_breaks, validators.validate_placeholders],
        help_text="Caller-ID display name to present to this carrier; {caller} is the "
        "calling number. Empty keeps the caller's.",
    )
    from_uri = models.CharField(
        verbose_name="From URI",
        max_length=255,
        blank=True,
        validators=[
            validators.validate_no_line_breaks,
            validators.validate_placeholders,
            validators.validate_from_uri,
        ],
        help_text="Caller-ID From URI to present, e.g. sip:{caller}@trunk.example.net. "
        "Empty keeps the caller's.",
    )
    rewrite_to = models.BooleanField(
        verbose_name="Rewrite To URI",
        default=False,
        help_text="Set the To header to the number sent to the carrier (some carriers "
        "route on To instead of the R-URI).",
    )
    extra_headers = models.TextField(
        blank=True,
        validators=[validators.validate_header_lines],
        help_text="Headers to add, one 'Name: value' per line, e.g. "
        "P-Asserted-Identity: <sip:{caller}@trunk.example.net>.",
    )
    branch_flags = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Kamailio branch flags to set on this branch (a bit mask), for your config.",
    )
    fr_timer = models.PositiveIntegerField(
        verbose_name="fr_timer",
        null=True,
        blank=True,
        help_text="Milliseconds to wait for any reply (e.g. 100 Trying) before failing over "
        "to the next trunk. Empty uses the platform default.",
    )
    fr_inv_timer = models.PositiveIntegerField(
        verbose_name="fr_inv_timer",
        null=True,
        blank=True,
        help_text="Milliseconds to wait for the call to be answered once it rings, before "
        "failing over. Empty uses the platform default.",
    )
    failover_codes = models.CharField(
        max_length=64,
        blank=True,
        validators=[validators.validate_failover_codes],
        help_text="Final SIP codes from this trunk that move a serial call to the next trunk: "
        "codes or classes, e.g. 5xx, 408, 486. Empty: the Kamailio config's default (5xx and "
        "408 in the shipped configs).",
    )
    # Number translation (routing.translation): the carrier's format, then its rules,
    # then strip_digits and tech_prefix.
    number_format = models.CharField(
        max_length=13,
        blank=True,
        choices=NumberFormat.choices,
        default=NumberFormat.AS_ROUTED,
        help_text="How this carrier wants the called and calling numbers (R-URI user, From "
        "user, {caller} in headers such as P-Asserted-Identity). National writes numbers of "
        "the trunk's country with its national prefix and others with its international "
        "prefix. As routed: the number as dialled, or E.164 digits when the customer "
        "normalises its numbers.",
    )
    country_code = models.CharField(
        max_length=3,
        blank=True,
        validators=[validators.validate_country_code],
        help_text="The carrier's country code, for the national format, e.g. 33.",
    )
    national_prefix = models.CharField(
        max_length=4,
        blank=True,
        default="0",
        validators=[validators.validate_dialling_prefix],
        help_text="Put before national numbers in the national format, e.g. 0.",
    )
    international_prefix = models.CharField(
        max_length=4,
        blank=True,
        default="00",
        validators=[validators.validate_dialling_prefix],
        help_text="Put before international numbers in the international and national "
        "formats, e.g. 00 (011 in North America).",
    )
    outbound_callee_rules = _rules(
        "Rules for the called number after the format, before digits are stripped and "
        "the tech prefix added."
    )
    outbound_caller_rules = _rules(
        "Rules for the calling number after the format (From user, {caller} placeholders)."
    )
    is_active = models.BooleanField(
        default=True, help_text="Untick to skip this trunk in every route that uses it."
    )
    # Capacity caps: Kamailio enforces them (dialog profiles and an htable counter,
    # deploy/kamailio/routing-common.cfg); the engine carries them in each rtjson route.
    max_calls = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most concurrent calls through this trunk (ringing or answered). A call "
        "beyond it goes to the next route. Empty: no cap.",
    )
    max_cps = models.PositiveIntegerField(
        verbose_name="Max CPS",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Most new calls per second sent to this trunk. A call beyond it goes to "
        "the next route. Empty: no cap.",
    )
    # Health policy (routing.health): when the trunk's outcomes take it out of routing.
    health_window = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(10), MaxValueValidator(3600)],
        help_text="Seconds of attempts the failure ratio looks at.",
    )
    health_min_attempts = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Attempts the window needs before its failure ratio counts.",
    )
    health_failure_ratio = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=50,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Percent of failed attempts (408, 5xx) in the window that makes the trunk "
        "unhealthy. Empty: not used.",
    )
    health_consecutive_failures = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=5,
        validators=[MinValueValidator(1)],
        help_text="Failed attempts (408, 5xx) in a row that make the trunk unhealthy. "
        "Empty: not used. With both empty the trunk is never taken out by its outcomes.",
    )
    health_cooldown = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(86400)],
        help_text="Seconds an unhealthy trunk gets no calls; then it gets a small share "
        "(half-open) and a success brings it back.",
    )

    history = HistoricalRecords()

    tenant_path = "carrier__tenant"

    class Meta:
        ordering = ["carrier__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "name"],
                name="trunk_name_unique_per_carrier",
                violation_error_message="This carrier already has a trunk with this name.",
            ),
            models.CheckConstraint(
                condition=Q(port__isnull=True) | Q(port__gte=1, port__lte=65535),
                name="trunk_port_valid",
                violation_error_message="A port is a number from 1 to 65535.",
            ),
            models.CheckConstraint(
                condition=Q(transport__in=Transport.values),
                name="trunk_transport_valid",
                violation_error_message="Transport must be udp, tcp or tls.",
            ),
            models.CheckConstraint(
                condition=Q(fr_timer__isnull=True) | Q(fr_timer__gt=0),
                name="trunk_fr_timer_positive",
                violation_error_message="fr_timer must be more than 0 ms.",
            ),
            models.CheckConstraint(
                condition=Q(fr_inv_timer__isnull=True) | Q(fr_inv_timer__gt=0),
                name="trunk_fr_inv_timer_positive",
                violation_error_message="fr_inv_timer must be more than 0 ms.",
            ),
            models.CheckConstraint(
                condition=Q(strip_digits__lte=15),
                name="trunk_strip_digits_max",
                violation_error_message="Strip at most 15 digits (an E.164 number's length).",
            ),
            models.CheckConstraint(
                condition=Q(max_calls__isnull=True) | Q(max_calls__gte=1),
                name="trunk_max_calls_positive",
                violation_error_message="A concurrent-call cap is at least 1 (empty: no cap).",
            ),
            models.CheckConstraint(
                condition=Q(max_cps__isnull=True) | Q(max_cps__gte=1),
                name="trunk_max_cps_positive",
                violation_error_message="A calls-per-second cap is at least 1 (empty: no cap).",
            ),
            models.CheckConstraint(
                condition=Q(number_format__in=NumberFormat.values),
                name="trunk_number_format_valid",
                violation_error_message="Number format must be empty, e164, plus, "
                "international or national.",
            ),
            models.CheckConstraint(
                condition=Q(health_window__gte=10, health_window__lte=3600),
                name="trunk_health_window_range",
                violation_error_message="The health window is 10 to 3600 seconds.",
            ),
            models.CheckConstraint(
                condition=Q(health_failure_ratio__isnull=True)
                | Q(health_failure_ratio__gte=1, health_failure_ratio__lte=100),
                name="trunk_health_failure_ratio_range",
                violation_error_message="The failure ratio is a percentage from 1 to 100.",
            ),
            models.CheckConstraint(
                condition=Q(health_cooldown__gte=1, health_cooldown__lte=86400),
                name="trunk_health_cooldown_range",
                violation_error_message="The cool-down is 1 to 86400 seconds.",
            ),
        ]

    def __str__(self) -> str:
        # Never raises: the history of a trunk outlives its carrier. Lists select_related
        # the carrier, so this costs no query there.
        if self.carrier_id is None:
            return self.name
        try:
            return f"{self.carrier.name} / {self.name}"
        except ObjectDoesNotExist:
            return f"{self.name} (carrier deleted)"

    def clean(self) -> None:
        if self.host:
            self.host = self.host.strip().strip("[]")
        if self.number_format == NumberFormat.NATIONAL and not self.country_code:
            raise ValidationError(
                {"country_code": "The national format needs the carrier's country code."}
            )


class RoutingPlan(MarginFields):
    """A named route table of a tenant: its dial prefixes and their targets.

    Each customer uses one plan, and many customers can share one. Every plan of a
    tenant routes to the same carriers and trunks (the tenant's vendors), so a
    premium and a standard plan differ in their routes, not in their vendors.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="plans")
    name = models.CharField(
        max_length=100, help_text="Unique within the tenant, e.g. 'Premium' or 'Standard'."
    )
    description = models.TextField(blank=True)
    published_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="The version of this plan's routes that calls use (versions.publishing). "
        "Empty: the plan is not staged, and its routes are live as soon as they are saved.",
    )

    history = HistoricalRecords()

    tenant_path = "tenant"

    class Meta:
        verbose_name = "routing plan"
        ordering = ["tenant__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="routingplan_name_unique_per_tenant",
                violation_error_message="This tenant already has a routing plan with this name.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    """An origination account of a tenant: a PBX or carrier that sends it calls.

    Its calls are recognised, within the tenant that the call's source network
    names, by any combination of its own source networks (optionally with a
    source port), a technical prefix at the start of the called number, and the
    account header the SBC in front sets. The most specific match wins
    (routing.resolver documents the order); the tenant's default customer, if it
    has one, takes the calls no other customer's rules match. A call that matches
    no customer is refused with 403, never given another customer's plan.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="customers")
    name = models.CharField(max_length=100, help_text="Unique within the tenant.")
    plan = models.ForeignKey(
        RoutingPlan,
        on_delete=models.PROTECT,
        related_name="customers",
        help_text="The route table this customer's calls are routed by.",
    )
    is_active = models.BooleanField(
        default=True,
        help_text="An inactive customer's calls are refused with 403 (never given to "
        "another customer).",
    )
    is_default = models.BooleanField(
        default=False,
        help_text="Takes the tenant's calls that no other customer's rules match. A default "
        "customer has no rules of its own; a tenant has at most one.",
    )
    tech_prefix = models.CharField(
        max_length=16,
        blank=True,
        validators=[validators.validate_tech_prefix],
        help_text="Digits (and * or #) this customer puts before the number, e.g. 4711#. "
        "They are removed before the number is routed.",
    )
    account = models.CharField(
        max_length=64,
        blank=True,
        validators=[validators.validate_no_line_breaks],
        help_text="The value of the account header (X-Account in the shipped Kamailio "
        "configs) that the SBC in front sets on this customer's calls.",
    )
    # Inbound number translation (routing.translation): the dialling context makes the
    # callee and caller E.164 before the route is matched, then the rules apply.
    country_code = models.CharField(
        max_length=3,
        blank=True,
        validators=[validators.validate_country_code],
        help_text="The customer's country code, e.g. 33: a national number (0612345678) "
        "becomes 33612345678 before it is routed. Empty: numbers are not normalised.",
    )
    national_prefix = models.CharField(
        max_length=4,
        blank=True,
        validators=[validators.validate_dialling_prefix],
        help_text="The customer's national dialling prefix, e.g. 0 (needs the country code).",
    )
    international_prefix = models.CharField(
        max_length=4,
        blank=True,
        validators=[validators.validate_dialling_prefix],
        help_text="The customer's international dialling prefix, e.g. 00 (011 in North "
        "America): 0044207... becomes 44207.... A leading + is always international.",
    )
    inbound_callee_rules = _rules(
        "Rules for the called number, after the dialling prefixes and before routing."
    )
    inbound_caller_rules = _rules("Rules for the calling number, after the dialling prefixes.")
    description = models.TextField(blank=True)

    history = HistoricalRecords()

    tenant_path = "tenant"

    class Meta:
        ordering = ["tenant__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="customer_name_unique_per_tenant",
                violation_error_message="This tenant already has a customer with this name.",
            ),
            models.UniqueConstraint(
                fields=["tenant"],
                condition=Q(is_default=True),
                name="customer_one_default_per_tenant",
                violation_error_message="This tenant already has a default customer.",
            ),
            models.CheckConstraint(
                condition=Q(is_default=False) | (Q(tech_prefix="") & Q(account="")),
                name="customer_default_has_no_rules",
                violation_error_message="The default customer takes the calls no rule "
                "matches: it cannot have a technical prefix or an account of its own.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.national_prefix and not self.country_code:
            raise ValidationError(
                {"country_code": "A national prefix needs the country code it stands for."}
            )
        if self.plan_id and self.tenant_id:
            try:
                plan_tenant = self.plan.tenant_id
            except ObjectDoesNotExist:
                return
            if plan_tenant != self.tenant_id:
                raise ValidationError({"plan": "Pick a routing plan of the customer's tenant."})


class CustomerSource(models.Model):
    """A network (and optionally a source port) a customer's calls come from."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="sources")
    network = NetworkField(
        help_text="IPv4 or IPv6 network in CIDR form, or a single address; it must lie "
        "within one of the tenant's source networks.",
    )
    port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Only calls from this source port (e.g. two PBXs behind one address). "
        "Empty: any port.",
    )

    history = HistoricalRecords()

    tenant_path = "customer__tenant"

    class Meta:
        ordering = ["network", "port"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "network", "port"],
                name="customersource_unique_per_customer",
                violation_error_message="This customer already has this network and port.",
            ),
            models.CheckConstraint(
                condition=Q(port__isnull=True) | Q(port__gte=1, port__lte=65535),
                name="customersource_port_valid",
                violation_error_message="A port is a number from 1 to 65535.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.network} port {self.port}" if self.port else str(self.network)


class Schedule(models.Model):
    """When a route or a target is in force: weekly windows in a time zone, and dates.

    Parsed and evaluated by routing.schedules (the resolver's rule); here it is
    stored and checked. A route with a schedule is used only while it is in force;
    an unscheduled route of the same prefix and caller prefix is the fallback.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="schedules")
    name = models.CharField(max_length=100, help_text="Unique within the tenant, e.g. 'Peak'.")
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        help_text="IANA time zone the periods are read in, e.g. Europe/Paris (follows daylight "
        "saving time).",
    )
    periods = models.TextField(
        blank=True,
        help_text="Days and times of day separated by ';', e.g. 'Mon-Fri 08:00-20:00; Sat "
        "09:00-13:00' (HH:MM or HH:MM:SS, end up to 24:00). An end must follow its start: "
        "write an overnight window as two periods, e.g. 'Mon-Fri 20:00-24:00; Tue-Sat "
        "00:00-08:00'. Empty: every day, all day.",
    )
    valid_from = models.DateTimeField(
        null=True, blank=True, help_text="In force from this instant on. Empty: always was."
    )
    valid_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="No longer in force from this instant on. Empty: no end.",
    )
    description = models.CharField(max_length=200, blank=True)

    history = HistoricalRecords()

    tenant_path = "tenant"

    class Meta:
        ordering = ["tenant__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="schedule_name_unique_per_tenant",
                violation_error_message="This tenant already has a schedule with this name.",
            ),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True)
                | Q(valid_until__isnull=True)
                | Q(valid_until__gt=models.F("valid_from")),
                name="schedule_valid_until_after_from",
                violation_error_message="'Valid until' must be after 'valid from'.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def parsed(self) -> schedules.Schedule:
        """The resolver's form of this schedule (raises ScheduleError if not valid)."""
        return schedules.Schedule.of(
            id=self.pk or 0,
            name=self.name,
            timezone=self.timezone,
            periods=self.periods,
            valid_from=self.valid_from.timestamp() if self.valid_from else None,
            valid_until=self.valid_until.timestamp() if self.valid_until else None,
        )

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            schedules.check_timezone(self.timezone)
        except schedules.ScheduleError as exc:
            errors["timezone"] = str(exc)
        try:
            schedules.parse(self.periods or "")
        except schedules.ScheduleError as exc:
            errors["periods"] = str(exc)
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            errors["valid_until"] = "'Valid until' must be after 'valid from'."
        if errors:
            raise ValidationError(errors)
        if self.pk:
            # A changed window may now meet another schedule on a sibling route.
            for route in self.routes.all():
                clash = overlapping_route(route, schedule=self)
                if clash is not None:
                    raise ValidationError(
                        {
                            "periods": f"With this change, {describe_route(route)} would overlap "
                            f"{describe_route(clash)}: both would be in force at once."
                        }
                    )


def describe_route(route: DialPrefix) -> str:
    """'route 44 caller 3312 (Peak)', as messages name a route."""
    text = f"route {route.prefix or '(default)'}"
    if route.caller_prefix:
        text += f" caller {route.caller_prefix}"
    if route.caller_pattern:
        text += f" caller ~{route.caller_pattern}"
    if route.schedule_id:
        text += f" ({route.schedule.name})"
    return text


def overlapping_route(route: DialPrefix, schedule: Schedule | None = None) -> DialPrefix | None:
    """Another scheduled route of the same plan, prefix and caller condition (prefix or
    pattern) whose schedule may be in force at the same time as this route's
    (`schedule`: an edited one). Different caller patterns are different conditions."""
    schedule = schedule or (route.schedule if route.schedule_id else None)
    if schedule is None or not route.plan_id:
        return None
    try:
        mine = schedule.parsed()
    except schedules.ScheduleError:
        return None  # reported on the schedule itself
    siblings = (
        DialPrefix.objects.filter(
            plan_id=route.plan_id,
            prefix=route.prefix,
            caller_prefix=route.caller_prefix,
            caller_pattern=route.caller_pattern,
        )
        .exclude(schedule__isnull=True)
        .exclude(schedule_id=schedule.pk)
        .select_related("schedule")
    )
    if route.pk:
        siblings = siblings.exclude(pk=route.pk)
    for other in siblings:
        try:
            theirs = other.schedule.parsed()
        except schedules.ScheduleError:
            continue
        if schedules.may_overlap(mine, theirs):
            return other
    return None


class RouteColumns(MarginFields):
    """The columns of a route, declared once: the draft (DialPrefix, what operators edit)
    and the published versions (PublishedRoute, what calls use) have the same ones."""

    prefix = models.CharField(
        max_length=32,
        blank=True,
        validators=[validators.validate_digits],
        help_text="Leading digits of the dialled number in E.164 form without '+' "
        "(e.g. 44 for the UK, 447 for UK mobiles). Empty is the default route.",
    )
    caller_prefix = models.CharField(
        max_length=32,
        blank=True,
        validators=[validators.validate_digits],
        help_text="Match only calls whose caller number starts with these digits (E.164 "
        "without '+'). Empty: any caller. A longer caller prefix wins over a shorter one.",
    )
    caller_pattern = models.CharField(
        max_length=200,
        blank=True,
        validators=[validators.validate_caller_pattern],
        help_text="Or match only calls whose caller number (digits) fully matches this RE2 "
        r"pattern, e.g. ^(33|44)[67]\d{8}$ (no back-references or look-around). Not with a "
        "caller prefix. Ranks below any caller prefix, above routes for any caller.",
    )
    description = models.CharField(max_length=200, blank=True)
    min_length = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(32)],
        help_text="Match only numbers with at least this many digits.",
    )
    max_length = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(32)],
        help_text="Match only numbers with at most this many digits.",
    )
    action = models.CharField(
        max_length=8,
        choices=Action.choices,
        default=Action.ROUTE,
        help_text="Route to the trunks below, send to local users, or reject the call.",
    )
    routing_mode = models.CharField(
        max_length=8,
        choices=RoutingMode.choices,
        default=RoutingMode.SERIAL,
        help_text="Serial tries one trunk after another on failure; parallel rings all at "
        "once (headers and timers then come from the Kamailio config).",
    )
    reject_code = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(400), MaxValueValidator(699)],
        help_text="SIP code for a reject route (400–699), e.g. 403 or 404.",
    )
    reject_reason = models.CharField(
        max_length=100,
        blank=True,
        validators=[validators.validate_no_line_breaks],
        help_text="SIP reason phrase for a reject route, e.g. Forbidden.",
    )
    is_active = models.BooleanField(
        default=True, help_text="Untick to take this route out of matching."
    )
    is_final = models.BooleanField(
        default=False,
        help_text="When none of this route's trunks can take a call (all inactive), answer "
        "503 instead of falling back to the next shorter matching prefix.",
    )
    strategy = models.CharField(
        max_length=8,
        choices=Strategy.choices,
        default=Strategy.FIXED,
        help_text="Fixed order, or least cost: candidates ordered by their carrier's rate "
        "for the number in the deck in force, cheapest first, within the margin guard.",
    )
    lcr_code = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(400), MaxValueValidator(699)],
        help_text="SIP code when least-cost routing leaves no vendor (no rate, or above the "
        "margin) and the call cannot fall back; empty: 503.",
    )

    class Meta:
        abstract = True


class DialPrefix(RouteColumns):
    """A route: what to do with calls whose number starts with `prefix`.

    The longest active prefix that fits the number's length wins. Its action routes
    to its targets (in serial or parallel), hands the call to the location service,
    or rejects it with a SIP code.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="prefixes")
    plan = models.ForeignKey(
        RoutingPlan,
        on_delete=models.PROTECT,
        related_name="prefixes",
        help_text="The routing plan (route table) this route belongs to.",
    )
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="routes",
        help_text="Use this route only while the schedule is in force. Empty: always. An "
        "unscheduled route of the same prefix and caller prefix is the fallback when no "
        "scheduled one is in force.",
    )
    # Imports write rows in bulk (COPY), without a historical row each; this is how a
    # route's history knows an import wrote it since (ops.history). No index: nothing
    # looks routes up by import, and an index would slow every import down.
    last_import = models.ForeignKey(
        "ImportRecord",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        db_index=False,
        related_name="+",
        help_text="The CSV import that last wrote this route, if any.",
    )

    history = HistoricalRecords()

    tenant_path = "tenant"

    class Meta:
        verbose_name = "dial prefix"
        verbose_name_plural = "dial prefixes"
        ordering = ["tenant__name", "prefix"]
        # The lookup of every decision (plan, prefix IN candidates): the unique
        # constraints below are partial (by schedule), so no query can use them for it.
        indexes = [models.Index(fields=["plan", "prefix"], name="dialprefix_plan_prefix")]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "prefix", "caller_prefix", "caller_pattern"],
                condition=Q(schedule__isnull=True),
                name="dialprefix_unscheduled_unique_per_plan",
                violation_error_message="This routing plan already has an unscheduled route for "
                "this prefix and caller prefix or pattern.",
            ),
            models.UniqueConstraint(
                fields=["plan", "prefix", "caller_prefix", "caller_pattern", "schedule"],
                condition=Q(schedule__isnull=False),
                name="dialprefix_scheduled_unique_per_plan",
                violation_error_message="This routing plan already has a route for this prefix "
                "and caller prefix or pattern with this schedule.",
            ),
            models.CheckConstraint(
                condition=Q(caller_prefix="") | Q(caller_pattern=""),
                name="dialprefix_caller_prefix_or_pattern",
                violation_error_message="A route has a caller prefix or a caller pattern, "
                "not both.",
            ),
            models.CheckConstraint(
                condition=Q(action__in=Action.values),
                name="dialprefix_action_valid",
                violation_error_message="Action must be route, location or reject.",
            ),
            models.CheckConstraint(
                condition=Q(routing_mode__in=RoutingMode.values),
                name="dialprefix_routing_mode_valid",
                violation_error_message="Routing mode must be serial or parallel.",
            ),
            models.CheckConstraint(
                condition=Q(min_length__isnull=True)
                | Q(max_length__isnull=True)
                | Q(min_length__lte=models.F("max_length")),
                name="dialprefix_length_bounds_ordered",
                violation_error_message="The minimum length cannot exceed the maximum length.",
            ),
            models.CheckConstraint(
                condition=~Q(action=Action.REJECT) | Q(reject_code__gte=400, reject_code__lte=699),
                name="dialprefix_reject_code_valid",
                violation_error_message="A reject route needs a SIP code from 400 to 699.",
            ),
            models.CheckConstraint(
                condition=Q(strategy__in=Strategy.values),
                name="dialprefix_strategy_valid",
                violation_error_message="Strategy must be fixed, lcr or lcr_all.",
            ),
            models.CheckConstraint(
                condition=Q(lcr_code__isnull=True) | Q(lcr_code__gte=400, lcr_code__lte=699),
                name="dialprefix_lcr_code_valid",
                violation_error_message="The least-cost failure code is a SIP code from 400 "
                "to 699.",
            ),
        ]

    def __str__(self) -> str:
        return self.prefix or "(default route)"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        number_length_floor = len(self.prefix or "")
        if self.max_length is not None and self.max_length < number_length_floor:
            errors["max_length"] = (
                f"No number of at most {self.max_length} digits can start with the "
                f"{number_length_floor}-digit prefix {self.prefix}."
            )
        if self.action == Action.REJECT and self.reject_code is None:
            errors["reject_code"] = "A reject route needs a SIP code, e.g. 403."
        if self.caller_prefix and self.caller_pattern:
            errors["caller_pattern"] = "A route has a caller prefix or a caller pattern, not both."
        if self.plan_id and self.tenant_id:
            try:
                if self.plan.tenant_id != self.tenant_id:
                    errors["plan"] = "Pick a routing plan of the route's tenant."
            except ObjectDoesNotExist:
                pass
        if self.schedule_id and self.tenant_id:
            try:
                if self.schedule.tenant_id != self.tenant_id:
                    errors["schedule"] = "Pick a schedule of the route's tenant."
            except ObjectDoesNotExist:
                pass
        if errors:
            raise ValidationError(errors)
        clash = overlapping_route(self)
        if clash is not None:
            raise ValidationError(
                {
                    "schedule": f"{describe_route(self)} overlaps {describe_route(clash)}: "
                    "both schedules can be in force at once, so which route a call takes would "
                    "be unclear. Make the windows or dates disjoint."
                }
            )


class RouteTarget(models.Model):
    """A trunk a route sends calls to, in order: lower priority first, then by weight."""

    prefix = models.ForeignKey(DialPrefix, on_delete=models.CASCADE, related_name="targets")
    trunk = models.ForeignKey(
        Trunk,
        on_delete=models.PROTECT,
        related_name="targets",
        help_text="A trunk of one of this tenant's carriers.",
    )
    priority = models.PositiveSmallIntegerField(
        default=1,
        help_text="Lower numbers are tried first. Targets of equal priority share calls by weight.",
    )
    weight = models.PositiveSmallIntegerField(
        default=100,
        validators=[MinValueValidator(1)],
        help_text="Share of calls among targets of the same priority (e.g. 70 and 30). "
        "The same call always gets the same order.",
    )
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="targets",
        help_text="Send calls to this trunk only while the schedule is in force. Empty: always.",
    )

    history = HistoricalRecords()

    tenant_path = "prefix__tenant"

    class Meta:
        ordering = ["priority", "-weight", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["prefix", "trunk"],
                name="routetarget_trunk_unique_per_prefix",
                violation_error_message="This trunk is already a target of this route.",
            ),
            models.CheckConstraint(
                condition=Q(weight__gt=0),
                name="routetarget_weight_positive",
                violation_error_message="A weight must be more than 0.",
            ),
        ]

    def __str__(self) -> str:
        # Never raises: a historical target may name a prefix or trunk deleted since.
        try:
            prefix = str(self.prefix)
        except ObjectDoesNotExist:
            prefix = "(deleted prefix)" if self.prefix_id else "(no prefix)"
        try:
            trunk = str(self.trunk)
        except ObjectDoesNotExist:
            trunk = "(deleted trunk)" if self.trunk_id else "(no trunk)"
        return f"{prefix} → {trunk} (priority {self.priority}, weight {self.weight})"

    def clean(self) -> None:
        # In an inline formset the parent prefix may not be saved yet, so compare the
        # related objects rather than ids read back from the database.
        try:
            prefix, trunk = self.prefix, self.trunk
        except ObjectDoesNotExist:
            return
        if prefix.tenant_id and trunk.carrier.tenant_id != prefix.tenant_id:
            raise ValidationError(
                {"trunk": "This trunk belongs to another tenant; pick one of the route's tenant."}
            )
        if self.schedule_id and prefix.tenant_id:
            try:
                if self.schedule.tenant_id != prefix.tenant_id:
                    raise ValidationError({"schedule": "Pick a schedule of the route's tenant."})
            except ObjectDoesNotExist:
                pass


class HealthState(models.TextChoices):
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


class HealthOverride(models.TextChoices):
    AUTO = "auto", "Automatic (from the trunk's outcomes)"
    UP = "up", "Forced in service (outcomes ignored)"
    DOWN = "down", "Forced out of service"


class TrunkHealth(models.Model):
    """A trunk's health as its call outcomes make it, and the operator's override.

    State, not configuration: the policy is on the trunk (Trunk.health_*), and
    routing.health is the only writer. Every engine process reads it with the trunk
    (a state change records a 'trunk' route change, so compiled tables reload it
    within a second). The window counters change on every outcome flush and never
    trigger a reload. A trunk without a row is healthy.
    """

    trunk = models.OneToOneField(
        Trunk, on_delete=models.CASCADE, primary_key=True, related_name="health"
    )
    state = models.CharField(max_length=9, choices=HealthState.choices, default=HealthState.HEALTHY)
    since = models.DateTimeField(help_text="When the trunk entered this state.")
    until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Unhealthy: end of the cool-down; after it the trunk is half-open.",
    )
    reason = models.CharField(max_length=200, blank=True)
    override = models.CharField(
        max_length=4, choices=HealthOverride.choices, default=HealthOverride.AUTO
    )
    # The policy's window: attempts and failures since window_start, failures in a row.
    window_start = models.DateTimeField(null=True, blank=True)
    window_attempts = models.PositiveIntegerField(default=0)
    window_failures = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    tenant_path = "trunk__carrier__tenant"

    class Meta:
        verbose_name_plural = "trunk health"
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=HealthState.values),
                name="trunkhealth_state_valid",
                violation_error_message="State must be healthy or unhealthy.",
            ),
            models.CheckConstraint(
                condition=Q(override__in=HealthOverride.values),
                name="trunkhealth_override_valid",
                violation_error_message="Override must be auto, up or down.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trunk_id}: {self.state} ({self.override})"


class TrunkHealthEvent(models.Model):
    """One change of a trunk's health or override: the history the admin shows."""

    trunk = models.ForeignKey(Trunk, on_delete=models.CASCADE, related_name="health_events")
    at = models.DateTimeField(db_index=True)
    state = models.CharField(max_length=9, choices=HealthState.choices)
    override = models.CharField(max_length=4, choices=HealthOverride.choices)
    reason = models.CharField(max_length=200, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who overrode the health; empty for changes the outcomes made.",
    )

    tenant_path = "trunk__carrier__tenant"

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["trunk", "-at"], name="trunkhealthevent_trunk_at")]

    def __str__(self) -> str:
        return f"{self.trunk_id} {self.at:%Y-%m-%d %H:%M:%S}: {self.state} ({self.reason})"


class PublishedRoute(RouteColumns):
    """A route as some published versions of its plan have it: what calls use.

    A staged plan's routes (DialPrefix and RouteTarget) are its draft; publishing
    (versions.publishing) stores the routes that differ from the last version as new
    rows here. A row is in every version from `since` to before `until` (None: still
    in force), so a version costs its changes, not a copy of the table, and the
    routes of any kept version are one indexed query (`since <= N < until`). The
    targets travel in the row itself, in the compiled table's own form (target ids,
    and the profile "trunk:priority:weight:schedule,..."), so one row read gives a
    route with its targets as of one version, never a mix of two.
    """

    plan = models.ForeignKey(RoutingPlan, on_delete=models.CASCADE, related_name="+")
    route_id = models.BigIntegerField(help_text="The draft route (DialPrefix) it came from.")
    # Plain ids, not foreign keys: schedules and trunks are live rows that a kept
    # version may outlive. A missing schedule is never in force; a missing trunk is
    # skipped (the resolver says so in the trace).
    schedule_id = models.BigIntegerField(null=True, blank=True)
    # NULL: no targets, as the route query that publishing copies from gives it.
    target_ids = models.TextField(null=True, blank=True)  # noqa: DJ001
    targets = models.TextField(  # noqa: DJ001
        null=True, blank=True, help_text="trunk:priority:weight:schedule,..."
    )
    since = models.PositiveIntegerField(help_text="The first version that has this row.")
    until = models.PositiveIntegerField(
        null=True, blank=True, help_text="The first version that no longer has it."
    )

    class Meta:
        verbose_name = "published route"
        # (plan, prefix): every decision's lookup. (plan, until): the rows in force
        # (until IS NULL) and pruning. No index on `since`: a database picking it for
        # "since <= N" (nearly every row) would scan a plan per decision.
        indexes = [
            models.Index(fields=["plan", "prefix"], name="publishedroute_plan_prefix"),
            models.Index(fields=["plan", "until"], name="publishedroute_plan_until"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(until__isnull=True) | Q(until__gt=models.F("since")),
                name="publishedroute_until_after_since",
                violation_error_message="A published route ends after the version it starts in.",
            ),
        ]

    def __str__(self) -> str:
        until = f"-{self.until - 1}" if self.until else "+"
        return f"{self.prefix or '(default route)'} (v{self.since}{until})"


class RouteTableVersion(models.Model):
    """The version of every route table, bumped in the same transaction as each change.

    One row (id 1). Database triggers (migration 0003) bump it and append a
    RouteChange for every write to tenants, sources, carriers, trunks, prefixes and
    targets, whoever makes it (admin, API, import, a bulk update, psql). The bump
    locks this row until commit, so a version read by a process means that every
    change up to it is committed: compiled tables (routing.compiled) poll it.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "route table version"

    def __str__(self) -> str:
        return f"route tables at version {self.version}"


class RouteChange(models.Model):
    """What one change touched, so that compiled tables reload only those rows.

    `kind` is tenant, sources, carrier, trunk, prefix (key: the prefix text) or
    table (the whole table of a tenant, after an import). Old rows are pruned.
    """

    version = models.BigIntegerField(db_index=True)
    kind = models.CharField(max_length=16)
    tenant_id = models.BigIntegerField(null=True, blank=True)
    key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version"]

    def __str__(self) -> str:
        return f"v{self.version} {self.kind} {self.tenant_id or ''} {self.key}".strip()


class ImportRecord(models.Model):
    """One CSV import of a tenant's prefixes, with its row counts (the import's history entry)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="imports")
    plan = models.ForeignKey(
        RoutingPlan,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="imports",
        help_text="The routing plan the rows went into.",
    )
    user = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=255, help_text="File name, or where the rows came from.")
    replace = models.BooleanField(
        default=False, help_text="Whether the import replaced the tenant's whole table."
    )
    rows = models.PositiveIntegerField(default=0, help_text="Data rows in the file.")
    created = models.PositiveIntegerField(default=0, help_text="Prefixes added.")
    updated = models.PositiveIntegerField(default=0, help_text="Prefixes changed.")
    deleted = models.PositiveIntegerField(default=0, help_text="Prefixes removed (replace).")
    targets = models.PositiveIntegerField(default=0, help_text="Route targets written.")
    seconds = models.FloatField(default=0)

    tenant_path = "tenant"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        mode = "replace" if self.replace else "merge"
        try:
            tenant = str(self.tenant)
        except ObjectDoesNotExist:
            tenant = "(deleted tenant)"
        return f"{self.source} into {tenant} ({mode}, {self.rows} rows)"
