"""Import a tenant's dial prefixes from CSV: validate every row, then write all or nothing.

The format (one row per prefix; `routing.exporting` writes the same):

    prefix,action,routing_mode,targets,min_length,max_length,reject_code,reject_reason,description,is_active
    33,route,serial,Carrier A/a-primary:1:100|Carrier A/a-backup:2:100,,,,,France,yes
    339,reject,serial,,,,403,Premium,,yes

Only `prefix` is required in the header; a missing column takes its default
(action route, routing mode serial, no targets, no bounds, active). Targets are
`carrier/trunk:priority:weight` separated by `|`, naming trunks of the tenant.

Every row is checked before anything is written, and every bad row is reported
with its line and column. The write is one transaction: calls see the old table
or the new one, never a mix. On PostgreSQL rows stream through COPY into a
staging table and land with two set-based statements; elsewhere bulk_create.
Without `replace`, rows are merged (prefixes in the file are created or
overwritten, targets included; others are kept); with it, the tenant's table
becomes exactly the file.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, TextIO

from django.db import DatabaseError, IntegrityError, connections, transaction

from routing import changes
from routing.csv_columns import COLUMNS
from routing.models import Action, ImportRecord, RoutingMode, Trunk
from tenants.models import Tenant

MAX_PREFIX = 32
MAX_ERRORS = 10_000  # listed; beyond that only counted
TRUE, FALSE = {"", "yes", "true", "1", "y"}, {"no", "false", "0", "n"}
_BOOLEANS = TRUE | FALSE
_ACTIONS = frozenset(Action.values)
_MODES = frozenset(RoutingMode.values)
_SMALL = 32767  # PositiveSmallIntegerField

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


class Row(NamedTuple):
    """One valid row, in the shape it is written."""

    line: int
    prefix: str
    min_length: int | None
    max_length: int | None
    action: str
    routing_mode: str
    reject_code: int | None
    reject_reason: str
    description: str
    is_active: bool
    targets: tuple[tuple[int, int, int], ...]  # (trunk id, priority, weight)


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


def trunk_names(tenant: Tenant) -> dict[str, int]:
    """'carrier/trunk' -> trunk id, for the tenant's trunks."""
    rows = Trunk.objects.filter(carrier__tenant=tenant).values_list("carrier__name", "name", "id")
    return {f"{carrier}/{trunk}": pk for carrier, trunk, pk in rows}


class RowParser:
    """Checks rows one by one, remembering what it needs across rows (duplicates)."""

    def __init__(self, trunks: dict[str, int]) -> None:
        self.trunks = trunks
        self.seen: dict[str, int] = {}
        self.errors: list[RowError] = []
        self.more = 0
        self.columns: list[str] = []
        self.positions: list[int] = []
        self._parsed: dict[str, tuple[tuple[int, int, int], ...]] = {"": ()}

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
        self.positions = [self.columns.index(n) if n in self.columns else -1 for n in COLUMNS]
        return ok

    def row(self, line: int, values: list[str]) -> Row | None:
        """The checked row, or None after recording its problems (fast path first)."""
        if len(values) != len(self.columns):
            self.error(line, "", f"{len(values)} fields, but the header has {len(self.columns)}")
            return None
        prefix, action, mode, targets, low, high, code, reason, text, active = (
            values[i].strip() if i >= 0 else "" for i in self.positions
        )
        before = len(self.errors) + self.more

        if not (prefix.isdigit() and prefix.isascii()) and prefix:
            self.error(line, "prefix", f"{prefix!r}: digits only (E.164 without '+' or spaces)")
        elif len(prefix) > MAX_PREFIX:
            self.error(line, "prefix", f"at most {MAX_PREFIX} digits")
        elif prefix in self.seen:
            first = self.seen[prefix]
            self.error(line, "prefix", f"prefix {prefix or '(default)'} is already on line {first}")
        else:
            self.seen[prefix] = line

        action = action.lower() or Action.ROUTE.value
        if action not in _ACTIONS:
            self.error(line, "action", f"{action!r}: use {', '.join(Action.values)}")
        mode = mode.lower() or RoutingMode.SERIAL.value
        if mode not in _MODES:
            self.error(line, "routing_mode", f"{mode!r}: use {', '.join(RoutingMode.values)}")
        min_length = self._number(line, low, "min_length", 0, MAX_PREFIX) if low else None
        max_length = self._number(line, high, "max_length", 0, MAX_PREFIX) if high else None
        if min_length is not None and max_length is not None and min_length > max_length:
            message = f"min_length {min_length} is more than max_length {max_length}"
            self.error(line, "min_length", message)
        if max_length is not None and max_length < len(prefix):
            message = f"no number of at most {max_length} digits starts with {prefix}"
            self.error(line, "max_length", message)
        reject_code = self._number(line, code, "reject_code", 400, 699) if code else None
        if action == "reject" and not code:
            message = "a reject route needs a SIP code from 400 to 699, e.g. 403"
            self.error(line, "reject_code", message)
        if reason and (len(reason) > 100 or "\n" in reason or "\r" in reason):
            self.error(line, "reject_reason", "one line of at most 100 characters")
        if len(text) > 200:
            self.error(line, "description", "at most 200 characters")
        active = active.lower()
        if active not in _BOOLEANS:
            self.error(line, "is_active", f"{active!r}: use yes or no")
        parsed = self._parsed.get(targets)
        if parsed is None:
            parsed = self._targets(line, targets)
        if len(self.errors) + self.more > before:
            return None
        return Row(
            line,
            prefix,
            min_length,
            max_length,
            action,
            mode,
            reject_code,
            reason,
            text,
            active in TRUE,
            parsed,
        )

    def _number(self, line: int, text: str, column: str, low: int, high: int) -> int | None:
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            self.error(line, column, f"{text!r}: a whole number from {low} to {high}")
            return None
        return int(text)

    def _targets(self, line: int, text: str) -> tuple[tuple[int, int, int], ...]:
        """Parse a targets cell; good ones are remembered (wholesale files repeat them)."""
        if not text:
            return ()
        targets, used, ok = [], set(), True
        for position, item in enumerate(text.split("|"), start=1):
            name, priority, weight = _split_target(item.strip(), position)
            trunk = self.trunks.get(name)
            if priority is None or weight is None:
                self.error(
                    line,
                    "targets",
                    f"{item.strip()!r}: write carrier/trunk:priority:weight, "
                    "priority 0-32767, weight 1-32767",
                )
            elif trunk is None:
                self.error(line, "targets", f"no trunk {name!r} in this tenant (carrier/trunk)")
            elif trunk in used:
                self.error(line, "targets", f"trunk {name!r} is listed twice")
            else:
                used.add(trunk)
                targets.append((trunk, priority, weight))
                continue
            ok = False
        parsed = tuple(targets)
        if ok and len(self._parsed) < 100_000:
            self._parsed[text] = parsed
        return parsed


def _split_target(item: str, position: int) -> tuple[str, int | None, int | None]:
    """'Carrier/trunk:1:100' -> ('Carrier/trunk', 1, 100); priority/weight may be left out."""
    parts = item.rsplit(":", 2)
    numbers: list[int | None] = []
    while len(parts) > 1 and parts[-1].strip().isdigit() and len(numbers) < 2:
        numbers.insert(0, int(parts.pop().strip()))
    if len(parts) > 1:  # a ':' whose right side is not a number
        return item, None, None
    priority = numbers[0] if numbers else position
    weight = numbers[1] if len(numbers) > 1 else 100
    if not 0 <= priority <= _SMALL or not 1 <= weight <= _SMALL:
        return parts[0], None, None
    return parts[0].strip(), priority, weight


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


def import_prefixes(
    open_text: Callable[[], TextIO],
    *,
    tenant: Tenant,
    replace: bool = False,
    source: str = "",
    user=None,
    progress: Progress | None = None,
    total_lines: int = 0,
    using: str = "default",
) -> ImportResult:
    """Check then write the CSV that `open_text()` opens; raise ImportFailed on bad rows."""
    started = time.monotonic()
    parser = RowParser(trunk_names(tenant))
    connection = connections[using]
    try:
        with transaction.atomic(using=using), changes.bulk_writes(using):
            if connection.vendor == "postgresql":
                result = _write_postgresql(
                    open_text, parser, tenant, replace, progress, total_lines, using
                )
            else:
                with open_text() as text:
                    rows = list(read_rows(text, parser, progress, total_lines))
                if parser.errors:
                    raise ImportFailed(parser.errors, parser.more)
                result = _write_generic(rows, tenant, replace, progress, using)
            result.seconds = time.monotonic() - started
            changes.record_change(changes.TABLE, tenant_id=tenant.pk, using=using)
            result.record = ImportRecord.objects.using(using).create(
                tenant=tenant,
                user=user if getattr(user, "pk", None) else None,
                source=source[:255],
                replace=replace,
                rows=result.rows,
                created=result.created,
                updated=result.updated,
                deleted=result.deleted,
                targets=result.targets,
                seconds=round(result.seconds, 3),
            )
    except IntegrityError as exc:  # e.g. a trunk deleted while the file was checked
        raise ImportFailed([RowError(0, "", f"the database refused the import: {exc}")]) from None
    return result


# Staged rows get their final prefix id from the table's own sequence as they are
# copied in (an existing prefix takes its id back below), so targets are written
# straight from the staging table, without joining a million rows back.
_STAGE_SQL = """
CREATE TEMP TABLE routing_import (
    id bigint DEFAULT nextval(pg_get_serial_sequence('routing_dialprefix', 'id')),
    existed boolean NOT NULL DEFAULT false,
    line integer, prefix text, min_length smallint, max_length smallint, action text,
    routing_mode text, reject_code smallint, reject_reason text, description text,
    is_active boolean, trunks bigint[], priorities integer[], weights integer[]
) ON COMMIT DROP
"""
_EXISTING_SQL = """
UPDATE routing_import s SET id = p.id, existed = true
FROM routing_dialprefix p WHERE p.tenant_id = %s AND p.prefix = s.prefix
"""
_DELETE_TARGETS_SQL = {
    "replace": """
DELETE FROM routing_routetarget t USING routing_dialprefix p
WHERE t.prefix_id = p.id AND p.tenant_id = %s
""",
    "merge": """
DELETE FROM routing_routetarget t USING routing_import s
WHERE t.prefix_id = s.id AND s.existed
""",
}
# New staged rows have fresh ids from the sequence, so "not staged" is "not in the file".
_DELETE_PREFIXES_SQL = """
DELETE FROM routing_dialprefix p WHERE p.tenant_id = %s AND NOT EXISTS
    (SELECT 1 FROM routing_import s WHERE s.id = p.id)
"""
_UPDATE_SQL = """
UPDATE routing_dialprefix p SET description = s.description, min_length = s.min_length,
    max_length = s.max_length, action = s.action, routing_mode = s.routing_mode,
    reject_code = s.reject_code, reject_reason = s.reject_reason, is_active = s.is_active
FROM routing_import s WHERE s.existed AND p.id = s.id
"""
_INSERT_SQL = """
INSERT INTO routing_dialprefix (id, tenant_id, prefix, description, min_length, max_length,
    action, routing_mode, reject_code, reject_reason, is_active)
SELECT id, %s, prefix, description, min_length, max_length, action, routing_mode,
    reject_code, reject_reason, is_active
FROM routing_import WHERE NOT existed
"""
# One staged row's targets come out of unnest() in the file's order and get
# increasing ids in that order, which export uses to order equal targets.
_TARGETS_SQL = """
INSERT INTO routing_routetarget (prefix_id, trunk_id, priority, weight)
SELECT s.id, u.trunk_id, u.priority, u.weight
FROM routing_import s
CROSS JOIN LATERAL unnest(s.trunks, s.priorities, s.weights) WITH ORDINALITY
    AS u(trunk_id, priority, weight, n)
"""


def _write_postgresql(
    open_text: Callable[[], TextIO],
    parser: RowParser,
    tenant: Tenant,
    replace: bool,
    progress: Progress | None,
    total_lines: int,
    using: str,
) -> ImportResult:
    """Stream checked rows through COPY into a staging table, then write set-based."""
    result = ImportResult()
    with connections[using].cursor() as cursor:
        # One import per tenant at a time; other tenants' imports run alongside.
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [6, tenant.pk])
        cursor.execute("DROP TABLE IF EXISTS pg_temp.routing_import")  # an earlier import
        cursor.execute(_STAGE_SQL)
        columns = (
            "line, prefix, min_length, max_length, action, routing_mode, reject_code, "
            "reject_reason, description, is_active, trunks, priorities, weights"
        )
        with (
            open_text() as text,
            cursor.cursor.copy(f"COPY routing_import ({columns}) FROM STDIN") as copy,
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
        if progress:
            progress("writing", 0, 3)
        cursor.execute("ANALYZE routing_import")
        cursor.execute(_EXISTING_SQL, [tenant.pk])
        result.updated = cursor.rowcount
        result.created = result.rows - result.updated
        # An index and fresh statistics after that UPDATE: without them the planner
        # can pick a nested loop over a million staged rows per deleted prefix.
        cursor.execute("CREATE INDEX ON routing_import (id)")
        cursor.execute("ANALYZE routing_import")
        unchecked = _lock_referenced_rows(cursor, tenant) and _skip_row_fk_checks(cursor)
        if replace:
            cursor.execute(_DELETE_TARGETS_SQL["replace"], [tenant.pk])
            cursor.execute(_DELETE_PREFIXES_SQL, [tenant.pk])
            result.deleted = cursor.rowcount
        else:
            cursor.execute(_DELETE_TARGETS_SQL["merge"])
        if progress:
            progress("writing", 1, 3)
        cursor.execute(_UPDATE_SQL)
        cursor.execute(_INSERT_SQL, [tenant.pk])
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
        columns = zip(*row.targets, strict=True) if row.targets else ((), (), ())
        targets = "\t".join("{" + ",".join(map(str, values)) + "}" for values in columns)
        if len(arrays) < 100_000:  # wholesale files repeat a few hundred target sets
            arrays[row.targets] = targets
    return (
        f"{row.line}\t{row.prefix}\t{_copy_value(row.min_length)}\t"
        f"{_copy_value(row.max_length)}\t{row.action}\t{row.routing_mode}\t"
        f"{_copy_value(row.reject_code)}\t{_copy_text(row.reject_reason)}\t"
        f"{_copy_text(row.description)}\t{'t' if row.is_active else 'f'}\t{targets}\n"
    )


def _copy_value(value: int | None) -> str:
    return "\\N" if value is None else str(value)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES) if value else value


def _write_generic(
    rows: list[Row], tenant: Tenant, replace: bool, progress: Progress | None, using: str
) -> ImportResult:
    """bulk_create/bulk_update for databases without COPY (SQLite: small tables)."""
    from routing.models import DialPrefix, RouteTarget

    result = ImportResult(rows=len(rows), targets=sum(len(r.targets) for r in rows))
    existing = dict(
        DialPrefix.objects.using(using).filter(tenant=tenant).values_list("prefix", "id")
    )
    in_file = {row.prefix for row in rows}
    gone = [pk for prefix, pk in existing.items() if prefix not in in_file] if replace else []
    kept = [existing[row.prefix] for row in rows if row.prefix in existing]
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
            id=existing.get(row.prefix),
            tenant=tenant,
            prefix=row.prefix,
            description=row.description,
            min_length=row.min_length,
            max_length=row.max_length,
            action=row.action,
            routing_mode=row.routing_mode,
            reject_code=row.reject_code,
            reject_reason=row.reject_reason,
            is_active=row.is_active,
        )
        for row in rows
    ]
    new = [obj for obj in objects if obj.id is None]
    old = [obj for obj in objects if obj.id is not None]
    fields = [
        "description",
        "min_length",
        "max_length",
        "action",
        "routing_mode",
        "reject_code",
        "reject_reason",
        "is_active",
    ]
    DialPrefix.objects.using(using).bulk_update(old, fields, batch_size=500)
    DialPrefix.objects.using(using).bulk_create(new, batch_size=500)
    result.created, result.updated = len(new), len(old)
    RouteTarget.objects.using(using).bulk_create(
        [
            RouteTarget(prefix_id=obj.id, trunk_id=trunk, priority=priority, weight=weight)
            for obj, row in zip(objects, rows, strict=True)
            for trunk, priority, weight in row.targets
        ],
        batch_size=500,
    )
    if progress:
        progress("writing", 1, 1)
    return result


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
