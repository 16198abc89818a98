"""The route-table rows, declared once: everything that reads or writes them derives from here.

A route table is four kinds of row: a tenant, a route (a dial prefix), a trunk, and a
route's target (a trunk with a priority and a weight). Each is a frozen dataclass
whose fields carry their `Column` (kind, bounds, where it lives in SQL, whether the
CSV format has it). From these declarations come:

- the rows the resolver reads (`RouteRow`, `TargetRow`, ...), built by keyword only;
- the SELECT lists of the database route table and of the compiled table's loader
  (`select_sql`, `orm_paths`), and building rows from their values (`build`);
- the CSV columns of the import and export format (`CSV_COLUMNS`, `csv_route_columns`);
- what the compiled table packs into its shared profiles (`packed_route_columns`).

Adding an attribute to routes or trunks is therefore: the model field (and its
migration), one field here, and the rule that uses it in the resolver.

Free of Django on purpose: tools outside the project's processes (bench/generate.py)
write exactly the CSV format the importer reads.
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar


class Kind(enum.StrEnum):
    INT = "int"
    TEXT = "text"
    BOOL = "bool"
    CHOICE = "choice"
    DECIMAL = "decimal"  # money and percentages: exact, `places` decimals
    TIME = "time"  # an instant, as Unix seconds (float)


@dataclass(frozen=True, slots=True)
class Column:
    """How one attribute of a row is stored, read and written.

    `sql` is the expression that selects it in the route table's SQL (default: the
    row's table alias and the field name); `orm` the Django lookup path for
    `values_list` (default: the name). `csv` says whether the CSV format carries it.
    For CSV and imports: `low`/`high` bound integers, `max_length` texts, `choices`
    lists the allowed values, `one_line` refuses line breaks, `default` is what an
    empty cell means.
    """

    kind: Kind
    null: bool = False
    sql: str = ""
    orm: str = ""
    csv: bool = False
    low: int | None = None
    high: int | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    one_line: bool = False
    places: int = 0  # DECIMAL: digits after the point
    default: Any = None
    name: str = ""  # filled in from the dataclass field


def column(kind: Kind, **options: Any) -> Any:
    """A dataclass field described by a Column (the row's default is the Column's)."""
    spec = Column(kind, **options)
    if spec.null:
        default: Any = None
    elif spec.default is not None:
        default = spec.default
    else:
        default = {
            Kind.INT: 0,
            Kind.TEXT: "",
            Kind.BOOL: False,
            Kind.CHOICE: "",
            Kind.DECIMAL: 0,
            Kind.TIME: 0.0,
        }[kind]
    return field(default=default, metadata={"column": spec})


ACTIONS = ("route", "location", "reject")
STRATEGIES = ("fixed", "lcr", "lcr_all")
ROUTING_MODES = ("serial", "parallel")
TRANSPORTS = ("udp", "tcp", "tls")
MAX_PREFIX = 32
_SMALL = 32767  # PositiveSmallIntegerField


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantRef:
    """A tenant as the resolver sees it."""

    id: int = column(Kind.INT)
    slug: str = column(Kind.TEXT)
    name: str = column(Kind.TEXT)
    is_active: bool = column(Kind.BOOL, default=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRef:
    """A routing plan (a named route table of a tenant) and its margin guard."""

    id: int = column(Kind.INT, sql="pl.id")
    tenant_id: int = column(Kind.INT, sql="pl.tenant_id")
    name: str = column(Kind.TEXT, sql="pl.name")
    margin_percent: Decimal | None = column(
        Kind.DECIMAL, null=True, sql="pl.margin_percent", places=2
    )
    margin_absolute: Decimal | None = column(
        Kind.DECIMAL, null=True, sql="pl.margin_absolute", places=6
    )
    max_cost: Decimal | None = column(Kind.DECIMAL, null=True, sql="pl.max_cost", places=6)
    # The version of its routes that calls use; None: the routes as saved (not staged).
    published_version: int | None = column(Kind.INT, null=True, sql="pl.published_version")


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerRow:
    """A customer of a tenant and the rules that recognise its calls.

    `sources` are (network, port or None) pairs; the resolver applies the rules
    (routing.resolver.recognise_customer), route tables only find the candidates.
    """

    id: int = column(Kind.INT, sql="cu.id")
    tenant_id: int = column(Kind.INT, sql="cu.tenant_id")
    name: str = column(Kind.TEXT, sql="cu.name")
    is_active: bool = column(Kind.BOOL, sql="cu.is_active", default=True)
    is_default: bool = column(Kind.BOOL, sql="cu.is_default")
    tech_prefix: str = column(Kind.TEXT, sql="cu.tech_prefix")
    account: str = column(Kind.TEXT, sql="cu.account")
    plan_id: int = column(Kind.INT, sql="cu.plan_id")
    plan_name: str = column(Kind.TEXT, sql="pl.name", orm="plan__name")
    plan_margin_percent: Decimal | None = column(
        Kind.DECIMAL, null=True, sql="pl.margin_percent", orm="plan__margin_percent", places=2
    )
    plan_margin_absolute: Decimal | None = column(
        Kind.DECIMAL, null=True, sql="pl.margin_absolute", orm="plan__margin_absolute", places=6
    )
    plan_max_cost: Decimal | None = column(
        Kind.DECIMAL, null=True, sql="pl.max_cost", orm="plan__max_cost", places=6
    )
    plan_published_version: int | None = column(
        Kind.INT, null=True, sql="pl.published_version", orm="plan__published_version"
    )
    # Inbound number translation (routing.translation).
    country_code: str = column(Kind.TEXT, sql="cu.country_code")
    national_prefix: str = column(Kind.TEXT, sql="cu.national_prefix")
    international_prefix: str = column(Kind.TEXT, sql="cu.international_prefix")
    inbound_callee_rules: str = column(Kind.TEXT, sql="cu.inbound_callee_rules")
    inbound_caller_rules: str = column(Kind.TEXT, sql="cu.inbound_caller_rules")
    sources: tuple[tuple[str, int | None], ...] = field(default=(), metadata={"column": None})


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRow:
    """A route (a dial prefix of a tenant) without its targets."""

    id: int = column(Kind.INT)
    prefix: str = column(Kind.TEXT, csv=True, max_length=MAX_PREFIX)
    # Route rules: the caller's number must start with caller_prefix ("": any caller),
    # and the schedule (routing.schedules) must be in force. The CSV names the
    # schedule in its own "schedule" column (CSV_COLUMNS), not by id.
    caller_prefix: str = column(Kind.TEXT, csv=True, max_length=MAX_PREFIX)
    # Or (not both): an RE2 pattern the caller's digits must fully match
    # (routing.translation.caller_pattern); it ranks below any caller prefix.
    caller_pattern: str = column(Kind.TEXT, csv=True, max_length=200, one_line=True)
    schedule_id: int | None = column(Kind.INT, null=True)
    action: str = column(Kind.CHOICE, csv=True, choices=ACTIONS, default="route")
    routing_mode: str = column(Kind.CHOICE, csv=True, choices=ROUTING_MODES, default="serial")
    min_length: int | None = column(Kind.INT, null=True, csv=True, low=0, high=MAX_PREFIX)
    max_length: int | None = column(Kind.INT, null=True, csv=True, low=0, high=MAX_PREFIX)
    reject_code: int | None = column(Kind.INT, null=True, csv=True, low=400, high=699)
    reject_reason: str = column(Kind.TEXT, csv=True, max_length=100, one_line=True)
    description: str = column(Kind.TEXT, csv=True, max_length=200)
    is_active: bool = column(Kind.BOOL, csv=True, default=True)
    is_final: bool = column(Kind.BOOL, csv=True, default=False)
    strategy: str = column(Kind.CHOICE, csv=True, choices=STRATEGIES, default="fixed")
    lcr_code: int | None = column(Kind.INT, null=True, csv=True, low=400, high=699)
    margin_percent: Decimal | None = column(
        Kind.DECIMAL, null=True, csv=True, low=0, high=100, places=2
    )
    margin_absolute: Decimal | None = column(
        Kind.DECIMAL, null=True, csv=True, low=0, high=10**6, places=6
    )
    max_cost: Decimal | None = column(
        Kind.DECIMAL, null=True, csv=True, low=0, high=10**6, places=6
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkRow:
    """A trunk with what the resolver needs of its carrier."""

    id: int = column(Kind.INT, sql="tr.id")
    carrier_id: int = column(Kind.INT, sql="tr.carrier_id")
    tenant_id: int = column(Kind.INT, sql="c.tenant_id", orm="carrier__tenant_id")
    name: str = column(Kind.TEXT, sql="tr.name")
    is_active: bool = column(Kind.BOOL, sql="tr.is_active", default=True)
    carrier_name: str = column(Kind.TEXT, sql="c.name", orm="carrier__name")
    carrier_active: bool = column(Kind.BOOL, sql="c.is_active", orm="carrier__is_active")
    host: str = column(Kind.TEXT, sql="tr.host")
    port: int | None = column(Kind.INT, null=True, sql="tr.port")
    transport: str = column(Kind.CHOICE, sql="tr.transport", choices=TRANSPORTS, default="udp")
    outbound_proxy: str = column(Kind.TEXT, sql="tr.outbound_proxy")
    socket: str = column(Kind.TEXT, sql="tr.socket")
    path: str = column(Kind.TEXT, sql="tr.path")
    tech_prefix: str = column(Kind.TEXT, sql="tr.tech_prefix")
    strip_digits: int = column(Kind.INT, sql="tr.strip_digits")
    from_display: str = column(Kind.TEXT, sql="tr.from_display")
    from_uri: str = column(Kind.TEXT, sql="tr.from_uri")
    rewrite_to: bool = column(Kind.BOOL, sql="tr.rewrite_to")
    extra_headers: str = column(Kind.TEXT, sql="tr.extra_headers")
    branch_flags: int | None = column(Kind.INT, null=True, sql="tr.branch_flags")
    fr_timer: int | None = column(Kind.INT, null=True, sql="tr.fr_timer")
    fr_inv_timer: int | None = column(Kind.INT, null=True, sql="tr.fr_inv_timer")
    failover_codes: str = column(Kind.TEXT, sql="tr.failover_codes")
    max_calls: int | None = column(Kind.INT, null=True, sql="tr.max_calls")
    max_cps: int | None = column(Kind.INT, null=True, sql="tr.max_cps")
    # Outbound number translation (routing.translation).
    number_format: str = column(Kind.TEXT, sql="tr.number_format")
    country_code: str = column(Kind.TEXT, sql="tr.country_code")
    national_prefix: str = column(Kind.TEXT, sql="tr.national_prefix")
    international_prefix: str = column(Kind.TEXT, sql="tr.international_prefix")
    outbound_callee_rules: str = column(Kind.TEXT, sql="tr.outbound_callee_rules")
    outbound_caller_rules: str = column(Kind.TEXT, sql="tr.outbound_caller_rules")
    # Its health (routing.health; a LEFT JOIN: no row is healthy, automatic).
    health_state: str = column(Kind.TEXT, sql="th.state", orm="health__state")
    health_since: float | None = column(Kind.TIME, null=True, sql="th.since", orm="health__since")
    health_until: float | None = column(Kind.TIME, null=True, sql="th.until", orm="health__until")
    health_reason: str = column(Kind.TEXT, sql="th.reason", orm="health__reason")
    health_override: str = column(Kind.TEXT, sql="th.override", orm="health__override")

    @property
    def label(self) -> str:
        return f"{self.carrier_name}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetLink:
    """A route's reference to a trunk: the target columns stored per route."""

    id: int = column(Kind.INT, sql="t.id")
    trunk_id: int = column(Kind.INT, sql="t.trunk_id", low=0)
    priority: int = column(Kind.INT, sql="t.priority", csv=True, low=0, high=_SMALL, default=1)
    weight: int = column(Kind.INT, sql="t.weight", csv=True, low=1, high=_SMALL, default=100)
    schedule_id: int | None = column(Kind.INT, null=True, sql="t.schedule_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRow:
    """A target as the resolver reads it: the link's columns and the trunk it names."""

    id: int
    priority: int
    weight: int
    trunk: TrunkRow
    schedule_id: int | None = None  # used only while that schedule is in force

    @classmethod
    def of(cls, link: TargetLink, trunk: TrunkRow) -> TargetRow:
        return cls(
            id=link.id,
            priority=link.priority,
            weight=link.weight,
            trunk=trunk,
            schedule_id=link.schedule_id,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRow:
    """A schedule as stored (routing.schedules.Schedule is its parsed form)."""

    id: int = column(Kind.INT, sql="s.id")
    tenant_id: int = column(Kind.INT, sql="s.tenant_id")
    name: str = column(Kind.TEXT, sql="s.name")
    timezone: str = column(Kind.TEXT, sql="s.timezone")
    periods: str = column(Kind.TEXT, sql="s.periods")
    valid_from: float | None = column(Kind.TIME, null=True, sql="s.valid_from")
    valid_until: float | None = column(Kind.TIME, null=True, sql="s.valid_until")


RouteEntry = tuple[RouteRow, tuple[TargetRow, ...]]
"""A route with its targets: what a RouteTable returns per matching prefix."""


# --- Deriving from the declarations ----------------------------------------------------

Row = TypeVar("Row")


def columns(row_type: type) -> tuple[Column, ...]:
    """The Columns of a row type, in declaration order, with their names filled in."""
    return tuple(
        replace(
            item.metadata["column"],
            name=item.name,
            default=item.default if item.default is not MISSING else None,
        )
        for item in fields(row_type)
        # Not a stored column (e.g. a customer's sources, read apart): no Column.
        if item.metadata.get("column") is not None
    )


def names(row_type: type) -> tuple[str, ...]:
    return tuple(spec.name for spec in columns(row_type))


def model_fields(row_type: type) -> tuple[str, ...]:
    """The names of the columns stored on the row's own model (not reached by a join)."""
    return tuple(spec.name for spec in columns(row_type) if not spec.orm)


# A route's targets in one text, as the compiled table loads them and a published
# route stores them: "trunk:priority:weight:schedule,..." per target, in target
# order (every TargetLink column but its id, all integers; no schedule is 0), with
# the target ids beside it as "id,id,...".
PROFILE_NAMES = tuple(name for name in names(TargetLink) if name != "id")
assert all(spec.kind is Kind.INT for spec in columns(TargetLink))


def parse_profile(text: str | None) -> tuple[tuple[int, ...], ...]:
    if not text:
        return ()
    return tuple(tuple(int(part) for part in item.split(":")) for item in text.split(","))


def parse_ids(text: str | None) -> list[int]:
    return [int(part) for part in text.split(",")] if text else []


def select_sql(row_type: type, alias: str) -> str:
    """The SELECT list of a row type's columns, for a table aliased `alias`."""
    return ", ".join(spec.sql or f"{alias}.{spec.name}" for spec in columns(row_type))


def orm_paths(row_type: type, prefix: str = "") -> tuple[str, ...]:
    """The values_list() paths of a row type's columns, under a relation `prefix`."""
    return tuple(prefix + (spec.orm or spec.name) for spec in columns(row_type))


def builder(row_type: type[Row]):
    """A function making a row from database values in select order.

    By keyword, never by position; booleans come back as 0/1 from SQLite's cursor
    and text may be NULL where a join found nothing, so both are normalised.
    """
    specs = columns(row_type)
    keys = tuple(spec.name for spec in specs)
    fixes = tuple(
        (i, normaliser(spec))
        for i, spec in enumerate(specs)
        if spec.kind in (Kind.BOOL, Kind.DECIMAL, Kind.TIME)
        or (spec.kind in (Kind.TEXT, Kind.CHOICE) and not spec.null)
    )

    def build(values) -> Row:
        if fixes:
            values = list(values)
            for i, fix in fixes:
                values[i] = fix(values[i])
        return row_type(**dict(zip(keys, values, strict=True)))

    return build


def normaliser(spec: Column):
    """How a database value of this column becomes the row's value.

    SQLite's cursor gives booleans as 0/1 and decimals as floats; a join may give
    NULL for text. Decimals are made exact with their declared places. Times come as
    aware datetimes (ORM, PostgreSQL's cursor) or as text in UTC (SQLite's cursor).
    """
    if spec.kind is Kind.BOOL:
        return bool
    if spec.kind is Kind.TIME:
        return _seconds
    if spec.kind is Kind.DECIMAL:
        step = Decimal(1).scaleb(-spec.places)

        def exact(value):
            return None if value is None else Decimal(str(value)).quantize(step)

        return exact
    if spec.kind in (Kind.TEXT, Kind.CHOICE) and not spec.null:
        return _text
    return _as_is


def _seconds(value) -> float | None:
    if value is None or isinstance(value, float | int):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _text(value) -> str:
    return value or ""


def _as_is(value):
    return value


def csv_route_columns() -> tuple[Column, ...]:
    """The route's own columns in the CSV format, in order."""
    return tuple(spec for spec in columns(RouteRow) if spec.csv)


def _csv_columns() -> tuple[str, ...]:
    route = [spec.name for spec in csv_route_columns()]
    # The targets cell (carrier/trunk:priority:weight|...) follows the routing mode,
    # where a reader of the file looks for where the calls go; the schedule (by name)
    # follows the caller prefix and pattern: these say which calls and when.
    route.insert(route.index("routing_mode") + 1, "targets")
    route.insert(route.index("caller_pattern") + 1, "schedule")
    return tuple(route)


CSV_COLUMNS: tuple[str, ...] = _csv_columns()
"""The header of the route-table CSV format (routing.importing, routing.exporting)."""


def packed_route_columns() -> tuple[Column, ...]:
    """What the compiled table shares between routes: all but the id, prefix and text."""
    return tuple(
        spec for spec in columns(RouteRow) if spec.name not in ("id", "prefix", "description")
    )
