"""Import a routing plan's dial prefixes from CSV: check every row, then write all or nothing.

The format (one row per prefix; `routing.exporting` writes the same; the columns
are `routing.rows.CSV_COLUMNS`, declared with the route's row):

    prefix,caller_prefix,schedule,action,routing_mode,targets,min_length,...
    33,,,route,serial,Carrier A/a-primary:1:100|Carrier A/a-backup:2:100,,...
    33,,Peak,route,serial,Carrier B/b-main:1:100@Weekdays,,...
    339,,,reject,serial,,,,403,Premium,...

Only `prefix` is required in the header; a missing column takes its default
(any caller, no schedule, action route, routing mode serial, no targets, no bounds,
active, not final). Targets are `carrier/trunk:priority:weight` separated by `|`,
naming trunks of the tenant, each optionally followed by `@schedule`. Schedules are
named (the tenant's); a route is keyed by (prefix, caller_prefix, caller_pattern,
schedule), and scheduled routes of one prefix and caller condition that may overlap
are refused. A caller pattern is RE2 (routing.translation.caller_pattern), and a row
has a caller prefix or a caller pattern, not both.

Every row is checked before anything is written, and every bad row is reported
with its line and column. The write is one transaction: calls see the old table
or the new one, never a mix. On PostgreSQL rows stream through COPY into a
staging table and land with two set-based statements; elsewhere bulk_create.
Without `replace`, rows are merged (prefixes in the file are created or
overwritten, targets included; others are kept); with it, the plan's table
becomes exactly the file.

`preview_import()` checks and stages the file the same way, counts what the import
would delete, add, change and keep, and rolls back: nothing is written. The command
and the admin show it before a replace and ask to confirm. A staged plan's import
writes its draft (versions.publishing): nothing of it is live until published.

Every route an import writes points to its ImportRecord (DialPrefix.last_import),
which is how its history (ops.history) shows the import: rows written in bulk get
no historical row of their own.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TextIO

from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Count
from django.utils import timezone

from routing import changes
from routing import schedules as schedule_rules
from routing.deadline import BULK_TIMEOUT_MS
from routing.models import DialPrefix, ImportRecord, RoutingPlan, Schedule, Trunk, describe_route
from routing.rows import CSV_COLUMNS, MAX_PREFIX, Column, Kind, csv_route_columns
from routing.services import plan_of, require_tenant
from routing.translation import MAX_PATTERN as MAX_CALLER_PATTERN
from routing.translation import RuleError, caller_pattern
from tenants.models import Tenant

COLUMNS = CSV_COLUMNS
MAX_ERRORS = 10_000  # listed; beyond that only counted
TRUE, FALSE = {"yes", "true", "1", "y"}, {"no", "false", "0", "n"}
_SMALL = 32767  # PositiveSmallIntegerField

# The route's own columns, as declared in routing.rows; the prefix is checked apart
# (digits, duplicates) and every other one by its Column.
_ROUTE_COLUMNS = csv_route_columns()
# The schedule is named in the file and written by id.
ROUTE_FIELDS = (*(spec.name for spec in _ROUTE_COLUMNS), "schedule_id")
WRITTEN_FIELDS = tuple(name for name in ROUTE_FIELDS if name != "prefix")
_BAD = object()

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class ImportFailed(Exception):
    """The file has bad rows (nothing was written); `errors` lists them in file order."""

    def __init__(self, errors: list[RowError], more: int = 0) -> None:
        self.errors = errors
        self.more = more  # errors found beyond MAX_ERRORS
        super().__init__(f"{len(errors) + more} error(s); first: {errors[0] if errors else '-'}")


Target = tuple[int, int, int, int | None]  # (trunk id, priority, weight, schedule id)
# (prefix, caller prefix, caller pattern, schedule id): one route
RouteKey = tuple[str, str, str, int | None]


class Row(NamedTuple):
    """One valid row, in the shape it is written."""

    line: int
    values: dict[str, Any]  # the route's columns (ROUTE_FIELDS) by name
    targets: tuple[Target, ...]

    @property
    def prefix(self) -> str:
        return self.values["prefix"]

    @property
    def key(self) -> RouteKey:
        values = self.values
        return (
            values["prefix"],
            values["caller_prefix"],
            values["caller_pattern"],
            values["schedule_id"],
        )


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    targets: int = 0
    seconds: float = 0.0
    record: ImportRecord | None = field(default=None, repr=False)

    def summary(self) -> str:
        return (
            f"{self.rows} rows: {self.created} prefixes created, {self.updated} overwritten, "
            f"{self.deleted} deleted, {self.targets} targets, in {self.seconds:.1f} s"
        )


class PreviewOutdated(ImportFailed):
    """The plan changed between the preview and the confirmed import (nothing written)."""

    def __init__(self, expected: int, deleted: int) -> None:
        message = (
            f"the plan changed since the preview: the import would now delete {routes(deleted)}, "
            f"not {expected:,}; nothing was imported, check the preview again"
        )
        super().__init__([RowError(0, "", message)])


@dataclass
class ImportPreview:
    """What an import would do to a plan, counted without writing anything.

    A route is identified by its key (prefix, caller prefix or pattern, schedule);
    `changed` routes are in the plan and the file with different columns or targets,
    `kept` ones are the same in both, `deleted` ones are in the plan only (replace).
    """

    plan: RoutingPlan
    replace: bool
    rows: int = 0
    added: int = 0
    changed: int = 0
    kept: int = 0
    deleted: int = 0

    @property
    def staged(self) -> bool:
        return self.plan.published_version is not None

    def summary(self) -> str:
        """'plan Default: 1,002 routes deleted, 8 changed, 0 added (0 kept unchanged; ...)'."""
        deleted = f"{routes(self.deleted)} deleted, " if self.replace else ""
        return (
            f"plan {self.plan.name}: {deleted}{self.changed:,} changed, {self.added:,} added "
            f"({self.kept:,} kept unchanged; {self.rows:,} rows in the file)"
        )


def routes(count: int) -> str:
    """'1 route', '1,002 routes'."""
    return f"{count:,} route{'' if count == 1 else 's'}"


def where_it_goes(plan: RoutingPlan) -> str:
    """Whether an import into `plan` is live at once or goes to its draft."""
    if plan.published_version is not None:
        return (
            f"Plan {plan.name} is staged: the import writes its draft, and nothing of it is "
            f"live until the draft is published (calls use version {plan.published_version})."
        )
    return f"Plan {plan.name} is not staged: the import is live as soon as it is committed."


def schedule_names(tenant: Tenant) -> dict[str, int]:
    """Schedule name -> id, for the tenant's schedules."""
    return dict(Schedule.objects.filter(tenant=tenant).values_list("name", "id"))


def trunk_names(tenant: Tenant) -> dict[str, int]:
    """'carrier/trunk' -> trunk id, for the tenant's trunks."""
    rows = Trunk.objects.filter(carrier__tenant=tenant).values_list("carrier__name", "name", "id")
    return {f"{carrier}/{trunk}": pk for carrier, trunk, pk in rows}


def cell_parser(spec: Column) -> Callable[[str], Any]:
    """A function from a cell's text to its value, or to a 1-tuple holding what is wrong.

    Built once per column from its declaration (bounds, choices, length, default), so
    a million rows pay for one call per cell and no lookups.
    """
    if spec.kind is Kind.INT:
        low, high = spec.low, spec.high
        empty = None if spec.null else spec.default

        def parse_int(text: str):
            if not text:
                return empty
            if text.isascii() and text.isdigit() and low <= int(text) <= high:
                return int(text)
            return (f"{text!r}: a whole number from {low} to {high}",)

        return parse_int
    if spec.kind is Kind.DECIMAL:
        low, high, places = spec.low, spec.high, spec.places
        step = Decimal(1).scaleb(-places)

        def parse_decimal(text: str):
            if not text:
                return None
            try:
                value = Decimal(text)
            except InvalidOperation:
                value = None
            if value is None or not value.is_finite() or not low <= value <= high:
                return (f"{text!r}: a number from {low} to {high}, e.g. 0.0125",)
            if value != value.quantize(step):
                return (f"{text!r}: at most {places} digits after the point",)
            return value.quantize(step)

        return parse_decimal
    if spec.kind is Kind.BOOL:
        default = spec.default

        def parse_bool(text: str):
            lowered = text.lower()
            if not lowered:
                return default
            if lowered in TRUE:
                return True
            if lowered in FALSE:
                return False
            return (f"{lowered!r}: use yes or no",)

        return parse_bool
    if spec.kind is Kind.CHOICE:
        choices, default = frozenset(spec.choices), spec.default

        def parse_choice(text: str):
            lowered = text.lower() or default
            if lowered in choices:
                return lowered
            return (f"{lowered!r}: use {', '.join(spec.choices)}",)

        return parse_choice
    limit, one_line = spec.max_length, spec.one_line
    message = (
        f"one line of at most {limit} characters" if one_line else f"at most {limit} characters"
    )

    def parse_text(text: str):
        if len(text) > limit or (one_line and ("\n" in text or "\r" in text)):
            return (message,)
        return text

    return parse_text


_PARSERS = tuple(
    (spec.name, cell_parser(spec))
    for spec in _ROUTE_COLUMNS
    if spec.name not in ("prefix", "caller_prefix")
)


class RowParser:
    """Checks rows one by one, remembering what it needs across rows (duplicates)."""

    def __init__(self, trunks: dict[str, int], schedules: dict[str, int] | None = None) -> None:
        self.trunks = trunks
        self.schedules = schedules or {}
        self.seen: dict[RouteKey, int] = {}
        self.errors: list[RowError] = []
        self.more = 0
        self.columns: list[str] = []
        self.positions: dict[str, int] = {}
        self._parsed: dict[str, tuple[Target, ...]] = {"": ()}

    def error(self, line: int, column: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(line, column, message))
        else:
            self.more += 1

    def header(self, names: list[str]) -> bool:
        self.columns = [name.strip().lower() for name in names]
        ok = True
        for name in self.columns:
            if name not in COLUMNS:
                self.error(1, name, f"unknown column; the columns are {', '.join(COLUMNS)}")
                ok = False
        for name in {n for n in self.columns if self.columns.count(n) > 1}:
            self.error(1, name, "this column appears twice")
            ok = False
        if "prefix" not in self.columns:
            self.error(1, "prefix", "the header has no prefix column")
            ok = False
        # Where each known column is in a row (-1: absent, read as empty).
        self.positions = {n: self.columns.index(n) if n in self.columns else -1 for n in COLUMNS}
        return ok

    def row(self, line: int, cells: list[str]) -> Row | None:
        """The checked row, or None after recording its problems."""
        if len(cells) != len(self.columns):
            self.error(line, "", f"{len(cells)} fields, but the header has {len(self.columns)}")
            return None
        at = self.positions

        def cell(name: str) -> str:
            i = at[name]
            return cells[i].strip() if i >= 0 else ""

        before = len(self.errors) + self.more
        prefix, caller, pattern = cell("prefix"), cell("caller_prefix"), cell("caller_pattern")
        name = cell("schedule")
        schedule = self.schedules.get(name) if name else None
        if name and schedule is None:
            self.error(line, "schedule", f"no schedule {name!r} in this tenant")
        for column_name, digits in (("prefix", prefix), ("caller_prefix", caller)):
            if not (digits.isdigit() and digits.isascii()) and digits:
                message = f"{digits!r}: digits only (E.164 without '+' or spaces)"
                self.error(line, column_name, message)
            elif len(digits) > MAX_PREFIX:
                self.error(line, column_name, f"at most {MAX_PREFIX} digits")
        if pattern and caller:
            self.error(line, "caller_pattern", "a caller prefix or a caller pattern, not both")
        elif pattern and len(pattern) <= MAX_CALLER_PATTERN and pattern.isprintable():
            # (too long or several lines: told by the column's own check)
            try:
                caller_pattern(pattern)
            except RuleError as exc:
                self.error(line, "caller_pattern", str(exc))
        key = (prefix, caller, pattern, schedule)
        if name and schedule is None:
            pass  # an unknown schedule: reported above, no duplicate to tell
        elif key in self.seen:
            first = self.seen[key]
            what = f"prefix {prefix or '(default)'}"
            what += f" caller {caller}" if caller else ""
            what += f" caller ~{pattern}" if pattern else ""
            what += f" schedule {name}" if name else ""
            self.error(line, "prefix", f"{what} is already on line {first}")
        else:
            self.seen[key] = line
        values: dict[str, Any] = {
            "prefix": prefix,
            "caller_prefix": caller,
            "schedule_id": schedule,
        }
        for name, parse in _PARSERS:
            value = parse(cell(name))
            if type(value) is tuple:
                self.error(line, name, value[0])
                value = None
            values[name] = value
        self._check_together(line, values, prefix, raw_code=cell("reject_code"))
        targets = cell("targets")
        parsed = self._parsed.get(targets)
        if parsed is None:
            parsed = self._targets(line, targets)
        if len(self.errors) + self.more > before:
            return None
        return Row(line, values, parsed)

    def _check_together(
        self, line: int, values: dict[str, Any], prefix: str, raw_code: str
    ) -> None:
        """The rules between columns (the model's clean() and constraints, row-wise)."""
        low, high = values["min_length"], values["max_length"]
        if low is not None and high is not None and low > high:
            self.error(line, "min_length", f"min_length {low} is more than max_length {high}")
        if high is not None and high < len(prefix):
            message = f"no number of at most {high} digits starts with {prefix}"
            self.error(line, "max_length", message)
        if values["action"] == "reject" and not raw_code:
            message = "a reject route needs a SIP code from 400 to 699, e.g. 403"
            self.error(line, "reject_code", message)

    def _targets(self, line: int, text: str) -> tuple[Target, ...]:
        """Parse a targets cell; good ones are remembered (wholesale files repeat them)."""
        if not text:
            return ()
        targets, used, ok = [], set(), True
        for position, item in enumerate(text.split("|"), start=1):
            head, at, tail = item.rpartition("@")
            schedule_name = tail.strip() if at and "/" not in tail else ""
            name, priority, weight, problem = _split_target(
                (head if schedule_name else item).strip(), position
            )
            trunk = self.trunks.get(name)
            schedule = self.schedules.get(schedule_name) if schedule_name else None
            if schedule_name and schedule is None:
                self.error(line, "targets", f"no schedule {schedule_name!r} in this tenant")
            elif priority is None or weight is None:
                self.error(
                    line,
                    "targets",
                    f"target {position} ({item.strip()!r}): {problem}; write "
                    "carrier/trunk:priority:weight, priority 0-32767, weight 1-32767",
                )
            elif trunk is None:
                self.error(line, "targets", f"no trunk {name!r} in this tenant (carrier/trunk)")
            elif trunk in used:
                self.error(line, "targets", f"trunk {name!r} is listed twice")
            else:
                used.add(trunk)
                targets.append((trunk, priority, weight, schedule))
                continue
            ok = False
        parsed = tuple(targets)
        if ok and len(self._parsed) < 100_000:
            self._parsed[text] = parsed
        return parsed


def _split_target(item: str, position: int) -> tuple[str, int | None, int | None, str]:
    """'Carrier/trunk:1:100' -> ('Carrier/trunk', 1, 100, ""); priority/weight may be
    left out. A bad one comes back with (None, None) and what is wrong with it."""
    parts = item.rsplit(":", 2)
    numbers: list[int | None] = []
    while len(parts) > 1 and parts[-1].strip().isdigit() and len(numbers) < 2:
        numbers.insert(0, int(parts.pop().strip()))
    if len(parts) > 1:  # a ':' whose right side is not a number
        return item, None, None, f"{parts[-1].strip()!r} is not a number"
    priority = numbers[0] if numbers else position
    weight = numbers[1] if len(numbers) > 1 else 100
    if not 0 <= priority <= _SMALL:
        return parts[0], None, None, f"priority {priority} is not 0-32767"
    if not 1 <= weight <= _SMALL:
        return parts[0], None, None, f"weight {weight} is not 1-32767"
    return parts[0].strip(), priority, weight, ""


def read_rows(
    lines: Iterable[str], parser: RowParser, progress: Progress | None = None, total: int = 0
) -> Iterator[Row]:
    """The valid rows of a CSV text; problems go to `parser.errors`."""
    reader = csv.reader(lines)
    line = 1
    try:
        header = next(reader, None)
        if header is None:
            parser.error(1, "", f"the file is empty; the header is {','.join(COLUMNS)}")
            return
        if not parser.header(header):
            return
        for values in reader:
            line = reader.line_num
            if not values or values == [""]:
                continue
            row = parser.row(line, values)
            if row is not None:
                yield row
            if progress and line % 50_000 == 0:
                progress("checking", line, total)
    except UnicodeDecodeError:
        parser.error(line + 1, "", "not UTF-8 text: save the file as UTF-8 CSV")
    except csv.Error as exc:
        parser.error(reader.line_num or line, "", f"not valid CSV ({exc})")
    if progress:
        progress("checking", total or line, total or line)


def count_lines(stream_bytes: Iterable[bytes]) -> int:
    return sum(chunk.count(b"\n") for chunk in stream_bytes)


# --- Writing ------------------------------------------------------------------------


def _the_plan(tenant: Tenant, plan: RoutingPlan | None) -> RoutingPlan:
    try:
        return plan_of(tenant=tenant, plan=plan)
    except ValidationError as exc:
        raise ImportFailed([RowError(0, "", " ".join(exc.messages))]) from None


def import_prefixes(
    open_text: Callable[[], TextIO],
    *,
    tenant: Tenant,
    plan: RoutingPlan | None = None,
    replace: bool = False,
    source: str = "",
    user=None,
    progress: Progress | None = None,
    total_lines: int = 0,
    using: str = "default",
    expect_deleted: int | None = None,
) -> ImportResult:
    """Check then write the CSV that `open_text()` opens into `plan` (the tenant's only
    plan when None); raise ImportFailed on bad rows.

    `user` is who imports (None for the command line, which acts for the platform):
    they must operate `tenant` (routing.services.require_tenant), and every trunk
    the rows name is checked to be the tenant's before anything is kept.
    `expect_deleted`: the number of routes a preview said the import deletes; if it
    would delete another number (the plan changed since), PreviewOutdated and nothing
    is written.
    """
    require_tenant(user=user, tenant=tenant)
    plan = _the_plan(tenant, plan)
    started = time.monotonic()
    parser = RowParser(trunk_names(tenant), schedule_names(tenant))
    connection = connections[using]
    try:
        with transaction.atomic(using=using), changes.bulk_writes(using):
            # First, so that the rows it writes can point to it; its counts come last.
            record = ImportRecord.objects.using(using).create(
                tenant=tenant,
                plan=plan,
                user=user if getattr(user, "pk", None) else None,
                source=source[:255],
                replace=replace,
            )
            if connection.vendor == "postgresql":
                result = _write_postgresql(
                    open_text, parser, plan, replace, progress, total_lines, using, record.pk
                )
            else:
                with open_text() as text:
                    rows = list(read_rows(text, parser, progress, total_lines))
                if parser.errors:
                    raise ImportFailed(parser.errors, parser.more)
                result = _write_generic(rows, plan, replace, progress, using, record.pk)
            if expect_deleted is not None and result.deleted != expect_deleted:
                raise PreviewOutdated(expect_deleted, result.deleted)
            _refuse_overlaps(plan, parser, using)
            result.seconds = time.monotonic() - started
            changes.record_change(changes.TABLE, tenant_id=tenant.pk, key=str(plan.pk), using=using)
            for name in ("rows", "created", "updated", "deleted", "targets"):
                setattr(record, name, getattr(result, name))
            record.seconds = round(result.seconds, 3)
            record.created_at = timezone.now()  # when it was written, as history tells it
            record.save(using=using)
            result.record = record
    except IntegrityError as exc:  # e.g. a trunk deleted while the file was checked
        raise ImportFailed([RowError(0, "", f"the database refused the import: {exc}")]) from None
    return result


def preview_import(
    open_text: Callable[[], TextIO],
    *,
    tenant: Tenant,
    plan: RoutingPlan | None = None,
    replace: bool = False,
    user=None,
    progress: Progress | None = None,
    total_lines: int = 0,
    using: str = "default",
) -> ImportPreview:
    """What import_prefixes() with these arguments would do, without writing anything.

    The file is checked as the import checks it (ImportFailed on bad rows) and, on
    PostgreSQL, staged the same way (COPY into a temporary table) in a transaction
    that is rolled back; three set-based queries then compare keys and contents with
    the plan's routes. A million rows cost the parse and the COPY, a few seconds more,
    and no memory per row. Elsewhere (SQLite: small tables) it compares in Python.
    """
    require_tenant(user=user, tenant=tenant)
    plan = _the_plan(tenant, plan)
    plan.refresh_from_db(using=using, fields=["published_version"])
    parser = RowParser(trunk_names(tenant), schedule_names(tenant))
    preview = ImportPreview(plan=plan, replace=replace)
    with transaction.atomic(using=using):
        if connections[using].vendor == "postgresql":
            with connections[using].cursor() as cursor:
                staged = _stage_postgresql(cursor, open_text, parser, plan, progress, total_lines)
                preview.rows = staged.rows
                cursor.execute(_PREVIEW_SQL, [plan.pk])
                matched, changed = cursor.fetchone()
                cursor.execute(
                    "SELECT count(*) FROM routing_dialprefix WHERE plan_id = %s", [plan.pk]
                )
                total = cursor.fetchone()[0]
        else:
            with open_text() as text:
                rows = list(read_rows(text, parser, progress, total_lines))
            if parser.errors:
                raise ImportFailed(parser.errors, parser.more)
            preview.rows = len(rows)
            matched, changed, total = _compare_generic(rows, plan, using)
        transaction.set_rollback(True, using=using)  # the staging table, nothing else
    preview.added = preview.rows - matched
    preview.changed = changed
    preview.kept = matched - changed
    preview.deleted = total - matched if replace else 0
    return preview


def _compare_generic(rows: list[Row], plan: RoutingPlan, using: str) -> tuple[int, int, int]:
    """(routes of the file in the plan, of which changed, routes in the plan)."""
    from routing.models import RouteTarget

    existing = {
        (v["prefix"], v["caller_prefix"], v["caller_pattern"], v["schedule_id"]): v
        for v in DialPrefix.objects.using(using).filter(plan=plan).values("id", *ROUTE_FIELDS)
    }
    targets: dict[int, list[Target]] = {}
    for prefix_id, *target in (
        RouteTarget.objects.using(using)
        .filter(prefix__plan=plan)
        .order_by("id")
        .values_list("prefix_id", "trunk_id", "priority", "weight", "schedule_id")
    ):
        targets.setdefault(prefix_id, []).append(tuple(target))
    matched = changed = 0
    for row in rows:
        old = existing.get(row.key)
        if old is None:
            continue
        matched += 1
        if any(old[name] != row.values[name] for name in WRITTEN_FIELDS) or tuple(
            targets.get(old["id"], ())
        ) != tuple(row.targets):
            changed += 1
    return matched, changed, len(existing)


# Staged rows get their final prefix id from the table's own sequence as they are
# copied in (an existing prefix takes its id back below), so targets are written
# straight from the staging table, without joining a million rows back.
_SQL_TYPES = {
    Kind.INT: "integer",
    Kind.TEXT: "text",
    Kind.CHOICE: "text",
    Kind.BOOL: "boolean",
    Kind.DECIMAL: "numeric",
}
_STAGED = ", ".join(
    [*(f"{spec.name} {_SQL_TYPES[spec.kind]}" for spec in _ROUTE_COLUMNS), "schedule_id bigint"]
)
_STAGE_SQL = f"""
CREATE TEMP TABLE routing_import (
    id bigint DEFAULT nextval(pg_get_serial_sequence('routing_dialprefix', 'id')),
    existed boolean NOT NULL DEFAULT false,
    line integer, {_STAGED}, trunks bigint[], priorities integer[], weights integer[],
    schedules bigint[]
) ON COMMIT DROP
"""
_COPY_COLUMNS = ", ".join(("line", *ROUTE_FIELDS, "trunks", "priorities", "weights", "schedules"))
_EXISTING_SQL = """
UPDATE routing_import s SET id = p.id, existed = true
FROM routing_dialprefix p WHERE p.plan_id = %s AND p.prefix = s.prefix
    AND p.caller_prefix = s.caller_prefix AND p.caller_pattern = s.caller_pattern
    AND p.schedule_id IS NOT DISTINCT FROM s.schedule_id
"""
_DELETE_TARGETS_SQL = {
    "replace": """
DELETE FROM routing_routetarget t USING routing_dialprefix p
WHERE t.prefix_id = p.id AND p.plan_id = %s
""",
    "merge": """
DELETE FROM routing_routetarget t USING routing_import s
WHERE t.prefix_id = s.id AND s.existed
""",
}
# New staged rows have fresh ids from the sequence, so "not staged" is "not in the file".
_DELETE_PREFIXES_SQL = """
DELETE FROM routing_dialprefix p WHERE p.plan_id = %s AND NOT EXISTS
    (SELECT 1 FROM routing_import s WHERE s.id = p.id)
"""
_UPDATE_SQL = f"""
UPDATE routing_dialprefix p SET {", ".join(f"{name} = s.{name}" for name in WRITTEN_FIELDS)},
    last_import_id = %s
FROM routing_import s WHERE s.existed AND p.id = s.id
"""  # noqa: S608
_INSERT_SQL = f"""
INSERT INTO routing_dialprefix (id, tenant_id, plan_id, last_import_id, {", ".join(ROUTE_FIELDS)})
SELECT id, %s, %s, %s, {", ".join(ROUTE_FIELDS)}
FROM routing_import WHERE NOT existed
"""  # noqa: S608
# One staged row's targets come out of unnest() in the file's order and get
# increasing ids in that order, which export uses to order equal targets.
_TARGETS_SQL = """
INSERT INTO routing_routetarget (prefix_id, trunk_id, priority, weight, schedule_id)
SELECT s.id, u.trunk_id, u.priority, u.weight, u.schedule_id
FROM routing_import s
CROSS JOIN LATERAL unnest(s.trunks, s.priorities, s.weights, s.schedules) WITH ORDINALITY
    AS u(trunk_id, priority, weight, schedule_id, n)
"""


# The staged rows that are routes of the plan already, and those of them whose columns
# or targets (in order: trunk, priority, weight, schedule) differ.
_TARGET_ARRAYS = """
SELECT array_agg(t.trunk_id ORDER BY t.id) AS trunks,
    array_agg(t.priority::integer ORDER BY t.id) AS priorities,
    array_agg(t.weight::integer ORDER BY t.id) AS weights,
    array_agg(t.schedule_id ORDER BY t.id) AS schedules
FROM routing_routetarget t WHERE t.prefix_id = p.id
"""
_DIFFERS = " OR ".join(
    [
        *(f"p.{name} IS DISTINCT FROM s.{name}" for name in WRITTEN_FIELDS),
        *(
            f"coalesce(t.{name}, '{{}}') IS DISTINCT FROM s.{name}"
            for name in ("trunks", "priorities", "weights", "schedules")
        ),
    ]
)
_PREVIEW_SQL = f"""
SELECT count(*), count(*) FILTER (WHERE {_DIFFERS})
FROM routing_import s
JOIN routing_dialprefix p ON p.plan_id = %s AND p.prefix = s.prefix
    AND p.caller_prefix = s.caller_prefix AND p.caller_pattern = s.caller_pattern
    AND p.schedule_id IS NOT DISTINCT FROM s.schedule_id
LEFT JOIN LATERAL ({_TARGET_ARRAYS}) t ON true
"""  # noqa: S608


def _stage_postgresql(
    cursor,
    open_text: Callable[[], TextIO],
    parser: RowParser,
    plan: RoutingPlan,
    progress: Progress | None,
    total_lines: int,
) -> ImportResult:
    """Check the rows and COPY the good ones into the temporary table routing_import
    (dropped at the end of the transaction); ImportFailed on bad rows."""
    result = ImportResult()
    # First: waiting for another import of the plan is bound by it too.
    cursor.execute(f"SET LOCAL statement_timeout = {BULK_TIMEOUT_MS}")
    # One import per plan at a time; other plans' imports run alongside.
    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [6, plan.pk])
    cursor.execute("DROP TABLE IF EXISTS pg_temp.routing_import")  # an earlier import
    cursor.execute(_STAGE_SQL)
    with (
        open_text() as text,
        cursor.cursor.copy(f"COPY routing_import ({_COPY_COLUMNS}) FROM STDIN") as copy,
    ):
        lines: list[str] = []
        arrays: dict[tuple, str] = {}
        for row in read_rows(text, parser, progress, total_lines):
            if parser.errors:
                continue  # keep checking, stop writing: nothing will be kept
            result.rows += 1
            result.targets += len(row.targets)
            lines.append(_copy_line(row, arrays))
            if len(lines) >= 5000:
                copy.write("".join(lines))
                lines.clear()
        if lines and not parser.errors:
            copy.write("".join(lines))
    if parser.errors:
        raise ImportFailed(parser.errors, parser.more)
    cursor.execute("ANALYZE routing_import")
    return result


def _write_postgresql(
    open_text: Callable[[], TextIO],
    parser: RowParser,
    plan: RoutingPlan,
    replace: bool,
    progress: Progress | None,
    total_lines: int,
    using: str,
    record_id: int,
) -> ImportResult:
    """Stream checked rows through COPY into a staging table, then write set-based."""
    tenant = plan.tenant
    with connections[using].cursor() as cursor:
        result = _stage_postgresql(cursor, open_text, parser, plan, progress, total_lines)
        if progress:
            progress("writing", 0, 3)
        cursor.execute(_EXISTING_SQL, [plan.pk])
        result.updated = cursor.rowcount
        result.created = result.rows - result.updated
        # An index and fresh statistics after that UPDATE: without them the planner
        # can pick a nested loop over a million staged rows per deleted prefix.
        cursor.execute("CREATE INDEX ON routing_import (id)")
        cursor.execute("ANALYZE routing_import")
        unchecked = _lock_referenced_rows(cursor, tenant) and _skip_row_fk_checks(cursor)
        if replace:
            cursor.execute(_DELETE_TARGETS_SQL["replace"], [plan.pk])
            cursor.execute(_DELETE_PREFIXES_SQL, [plan.pk])
            result.deleted = cursor.rowcount
        else:
            cursor.execute(_DELETE_TARGETS_SQL["merge"])
        if progress:
            progress("writing", 1, 3)
        cursor.execute(_UPDATE_SQL, [record_id])
        cursor.execute(_INSERT_SQL, [tenant.pk, plan.pk, record_id])
        if progress:
            progress("writing", 2, 3)
        cursor.execute(_TARGETS_SQL)
        if unchecked:
            cursor.execute("SET LOCAL session_replication_role = origin")
        if progress:
            progress("writing", 3, 3)
    return result


def _lock_referenced_rows(cursor, tenant: Tenant) -> bool:
    """Lock the tenant and trunks the new rows point to, as the foreign keys would.

    FOR KEY SHARE until commit: nobody can delete them meanwhile, so the new rows'
    references are sound whether or not the per-row foreign-key checks run.
    """
    cursor.execute("SELECT 1 FROM tenants_tenant WHERE id = %s FOR KEY SHARE", [tenant.pk])
    cursor.execute(
        "SELECT count(*) FROM (SELECT DISTINCT unnest(trunks) AS id FROM routing_import) u "
        "WHERE NOT EXISTS (SELECT 1 FROM routing_trunk t WHERE t.id = u.id)"
    )
    if cursor.fetchone()[0]:
        raise ImportFailed([RowError(0, "targets", "a trunk was deleted during the import")])
    cursor.execute(
        "SELECT count(*) FROM routing_trunk t JOIN routing_carrier c ON c.id = t.carrier_id "
        "WHERE t.id IN (SELECT DISTINCT unnest(trunks) FROM routing_import) "
        "AND c.tenant_id <> %s",
        [tenant.pk],
    )
    if cursor.fetchone()[0]:  # only a bug could get here: trunks are looked up by tenant
        raise ImportFailed([RowError(0, "targets", "a trunk belongs to another tenant")])
    cursor.execute(
        "SELECT 1 FROM routing_trunk WHERE id IN "
        "(SELECT DISTINCT unnest(trunks) FROM routing_import) FOR KEY SHARE"
    )
    return True


def _skip_row_fk_checks(cursor) -> bool:
    """Turn off per-row triggers (foreign-key checks) for the inserts, when allowed.

    A million targets queue millions of foreign-key checks that run at commit and
    cost more than the inserts. _lock_referenced_rows() did their work in two
    statements. Only roles allowed to set session_replication_role (superusers, or
    `GRANT SET ON PARAMETER session_replication_role TO <role>` on PostgreSQL 15+)
    may; others keep the per-row checks, correct and slower. The deletes of a
    replace run unchecked too, unless another table references prefixes or targets.
    """
    # Deleted prefixes must be referenced by nothing but their targets (deleted first).
    cursor.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND ("
        "(confrelid = 'routing_dialprefix'::regclass "
        "AND conrelid <> 'routing_routetarget'::regclass) "
        "OR confrelid = 'routing_routetarget'::regclass)"
    )
    if cursor.fetchone()[0]:
        return False
    cursor.execute("SAVEPOINT routing_import_role")
    try:
        cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        cursor.execute("ROLLBACK TO SAVEPOINT routing_import_role")
        return False
    cursor.execute("RELEASE SAVEPOINT routing_import_role")
    return True


def _copy_line(row: Row, arrays: dict[tuple, str]) -> str:
    """One line of COPY text format (tab-separated, \\N for NULL) for the staging table."""
    targets = arrays.get(row.targets)
    if targets is None:
        columns = zip(*row.targets, strict=True) if row.targets else ((), (), (), ())
        targets = "\t".join(
            "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
            for values in columns
        )
        if len(arrays) < 100_000:  # wholesale files repeat a few hundred target sets
            arrays[row.targets] = targets
    values = row.values
    cells = "\t".join(_copy_value(values[name]) for name in ROUTE_FIELDS)
    return f"{row.line}\t{cells}\t{targets}\n"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if type(value) is int or type(value) is Decimal:
        return str(value)
    return value.translate(_COPY_ESCAPES) if value else value


def _write_generic(
    rows: list[Row],
    plan: RoutingPlan,
    replace: bool,
    progress: Progress | None,
    using: str,
    record_id: int,
) -> ImportResult:
    """bulk_create/bulk_update for databases without COPY (SQLite: small tables)."""
    from routing.models import RouteTarget

    result = ImportResult(rows=len(rows), targets=sum(len(r.targets) for r in rows))
    tenant = plan.tenant
    trunk_ids = {trunk for row in rows for trunk, *_ in row.targets}
    foreign = Trunk.objects.using(using).filter(pk__in=trunk_ids).exclude(carrier__tenant=tenant)
    if foreign.exists():  # only a bug could get here: trunks are looked up by tenant
        raise ImportFailed([RowError(0, "targets", "a trunk belongs to another tenant")])
    existing = {
        (prefix, caller, pattern, schedule): pk
        for prefix, caller, pattern, schedule, pk in DialPrefix.objects.using(using)
        .filter(plan=plan)
        .values_list("prefix", "caller_prefix", "caller_pattern", "schedule_id", "id")
    }
    in_file = {row.key for row in rows}
    gone = [pk for key, pk in existing.items() if key not in in_file] if replace else []
    kept = [existing[row.key] for row in rows if row.key in existing]
    # Only placeholders are put into these statements (S608).
    with connections[using].cursor() as cursor:
        for ids in _chunks(gone + kept, 500):
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(f"DELETE FROM routing_routetarget WHERE prefix_id IN ({marks})", ids)  # noqa: S608
        for ids in _chunks(gone, 500):
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(f"DELETE FROM routing_dialprefix WHERE id IN ({marks})", ids)  # noqa: S608
    result.deleted = len(gone)
    objects = [
        DialPrefix(
            id=existing.get(row.key),
            tenant=tenant,
            plan=plan,
            last_import_id=record_id,
            **row.values,
        )
        for row in rows
    ]
    new = [obj for obj in objects if obj.id is None]
    old = [obj for obj in objects if obj.id is not None]
    DialPrefix.objects.using(using).bulk_update(
        old, [*WRITTEN_FIELDS, "last_import_id"], batch_size=500
    )
    DialPrefix.objects.using(using).bulk_create(new, batch_size=500)
    result.created, result.updated = len(new), len(old)
    RouteTarget.objects.using(using).bulk_create(
        [
            RouteTarget(
                prefix_id=obj.id,
                trunk_id=trunk,
                priority=priority,
                weight=weight,
                schedule_id=schedule,
            )
            for obj, row in zip(objects, rows, strict=True)
            for trunk, priority, weight, schedule in row.targets
        ],
        batch_size=500,
    )
    if progress:
        progress("writing", 1, 1)
    return result


def _refuse_overlaps(plan: RoutingPlan, parser: RowParser, using: str) -> None:
    """After the write, in its transaction: scheduled routes of one prefix and caller
    condition (prefix or pattern) must not overlap (routing.models.overlapping_route,
    set-based here)."""
    groups = (
        DialPrefix.objects.using(using)
        .filter(plan=plan, schedule__isnull=False)
        .values("prefix", "caller_prefix", "caller_pattern")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("prefix", "caller_prefix", "caller_pattern")
    )
    errors = []
    for prefix, caller, pattern in groups:
        routes = list(
            DialPrefix.objects.using(using)
            .filter(
                plan=plan,
                prefix=prefix,
                caller_prefix=caller,
                caller_pattern=pattern,
                schedule__isnull=False,
            )
            .select_related("schedule")
            .order_by("id")
        )
        parsed = {}
        for route in routes:
            try:
                parsed[route.pk] = route.schedule.parsed()
            except schedule_rules.ScheduleError:
                continue
        for i, first in enumerate(routes):
            for second in routes[i + 1 :]:
                if (
                    first.pk in parsed
                    and second.pk in parsed
                    and schedule_rules.may_overlap(parsed[first.pk], parsed[second.pk])
                ):
                    line = parser.seen.get(
                        (prefix, caller, pattern, second.schedule_id)
                    ) or parser.seen.get((prefix, caller, pattern, first.schedule_id), 0)
                    errors.append(
                        RowError(
                            line,
                            "schedule",
                            f"{describe_route(second)} overlaps {describe_route(first)}: both "
                            "schedules can be in force at once; make them disjoint",
                        )
                    )
    if errors:
        raise ImportFailed(sorted(errors, key=lambda e: e.line))


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
