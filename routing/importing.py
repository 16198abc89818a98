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
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from django.db import IntegrityError, connections, transaction

from routing import changes
from routing.models import Action, ImportRecord, RoutingMode, Trunk
from tenants.models import Tenant

COLUMNS = (
    "prefix",
    "action",
    "routing_mode",
    "targets",
    "min_length",
    "max_length",
    "reject_code",
    "reject_reason",
    "description",
    "is_active",
)
MAX_PREFIX = 32
MAX_ERRORS = 10_000  # listed; beyond that only counted
TRUE, FALSE = {"", "yes", "true", "1", "y"}, {"no", "false", "0", "n"}
_DIGITS = re.compile(r"^[0-9]*$")
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


@dataclass(frozen=True, slots=True)
class Row:
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
        return ok

    def row(self, line: int, values: list[str]) -> Row | None:
        if len(values) != len(self.columns):
            self.error(line, "", f"{len(values)} fields, but the header has {len(self.columns)}")
            return None
        data = dict(zip(self.columns, values, strict=True))
        before = len(self.errors) + self.more

        def bad(column: str, message: str) -> None:
            self.error(line, column, message)

        prefix = data["prefix"].strip()
        if not _DIGITS.match(prefix):
            bad("prefix", f"{prefix!r}: digits only (E.164 without '+' or spaces, e.g. 3361)")
        elif len(prefix) > MAX_PREFIX:
            bad("prefix", f"at most {MAX_PREFIX} digits")
        elif prefix in self.seen:
            bad("prefix", f"prefix {prefix or '(default)'} is already on line {self.seen[prefix]}")
        else:
            self.seen[prefix] = line

        action = data.get("action", "").strip().lower() or Action.ROUTE
        if action not in Action.values:
            bad("action", f"{action!r}: use {', '.join(Action.values)}")
        mode = data.get("routing_mode", "").strip().lower() or RoutingMode.SERIAL
        if mode not in RoutingMode.values:
            bad("routing_mode", f"{mode!r}: use {', '.join(RoutingMode.values)}")
        min_length = self._number(line, data, "min_length", 0, MAX_PREFIX)
        max_length = self._number(line, data, "max_length", 0, MAX_PREFIX)
        if min_length is not None and max_length is not None and min_length > max_length:
            bad("min_length", f"min_length {min_length} is more than max_length {max_length}")
        if max_length is not None and max_length < len(prefix):
            bad("max_length", f"no number of at most {max_length} digits starts with {prefix}")
        reject_code = self._number(line, data, "reject_code", 400, 699)
        if action == Action.REJECT and not data.get("reject_code", "").strip():
            bad("reject_code", "a reject route needs a SIP code from 400 to 699, e.g. 403")
        reason = data.get("reject_reason", "").strip()
        if len(reason) > 100 or "\n" in reason or "\r" in reason:
            bad("reject_reason", "one line of at most 100 characters")
        description = data.get("description", "").strip()
        if len(description) > 200:
            bad("description", "at most 200 characters")
        active = data.get("is_active", "").strip().lower()
        if active not in TRUE | FALSE:
            bad("is_active", f"{active!r}: use yes or no")
        targets = self._targets(line, data.get("targets", ""))
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
            description,
            active in TRUE,
            targets,
        )

    def _number(self, line: int, data: dict, column: str, low: int, high: int) -> int | None:
        text = data.get(column, "").strip()
        if not text:
            return None
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            self.error(line, column, f"{text!r}: a whole number from {low} to {high}")
            return None
        return int(text)

    def _targets(self, line: int, text: str) -> tuple[tuple[int, int, int], ...]:
        text = text.strip()
        if not text:
            return ()
        targets, used = [], set()
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
        return tuple(targets)


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


_STAGE_SQL = """
CREATE TEMP TABLE routing_import (
    line integer, prefix text, min_length smallint, max_length smallint, action text,
    routing_mode text, reject_code smallint, reject_reason text, description text,
    is_active boolean, trunks bigint[], priorities integer[], weights integer[]
) ON COMMIT DROP
"""
_EXISTING_SQL = """
SELECT count(*) FROM routing_import s
JOIN routing_dialprefix p ON p.tenant_id = %s AND p.prefix = s.prefix
"""
_DELETE_TARGETS_SQL = """
DELETE FROM routing_routetarget t USING routing_dialprefix p
WHERE t.prefix_id = p.id AND p.tenant_id = %s
"""
_UPSERT_SQL = """
INSERT INTO routing_dialprefix (tenant_id, prefix, description, min_length, max_length,
    action, routing_mode, reject_code, reject_reason, is_active)
SELECT %s, prefix, description, min_length, max_length, action, routing_mode, reject_code,
    reject_reason, is_active
FROM routing_import ORDER BY line
ON CONFLICT (tenant_id, prefix) DO UPDATE SET description = EXCLUDED.description,
    min_length = EXCLUDED.min_length, max_length = EXCLUDED.max_length,
    action = EXCLUDED.action, routing_mode = EXCLUDED.routing_mode,
    reject_code = EXCLUDED.reject_code, reject_reason = EXCLUDED.reject_reason,
    is_active = EXCLUDED.is_active
"""
_TARGETS_SQL = """
INSERT INTO routing_routetarget (prefix_id, trunk_id, priority, weight)
SELECT p.id, u.trunk_id, u.priority, u.weight
FROM routing_import s
JOIN routing_dialprefix p ON p.tenant_id = %s AND p.prefix = s.prefix
CROSS JOIN LATERAL unnest(s.trunks, s.priorities, s.weights) WITH ORDINALITY
    AS u(trunk_id, priority, weight, n)
ORDER BY s.line, u.n
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
            for row in read_rows(text, parser, progress, total_lines):
                if parser.errors:
                    continue  # keep checking, stop writing: nothing will be kept
                result.rows += 1
                result.targets += len(row.targets)
                copy.write_row(
                    (
                        *(
                            row.line,
                            row.prefix,
                            row.min_length,
                            row.max_length,
                            row.action,
                            row.routing_mode,
                            row.reject_code,
                            row.reject_reason,
                            row.description,
                            row.is_active,
                        ),
                        [t[0] for t in row.targets],
                        [t[1] for t in row.targets],
                        [t[2] for t in row.targets],
                    )
                )
        if parser.errors:
            raise ImportFailed(parser.errors, parser.more)
        if progress:
            progress("writing", 0, 3)
        cursor.execute("ANALYZE routing_import")
        cursor.execute(_EXISTING_SQL, [tenant.pk])
        result.updated = cursor.fetchone()[0]
        result.created = result.rows - result.updated
        if replace:
            cursor.execute(_DELETE_TARGETS_SQL, [tenant.pk])
            cursor.execute(
                "DELETE FROM routing_dialprefix p WHERE p.tenant_id = %s AND NOT EXISTS "
                "(SELECT 1 FROM routing_import s WHERE s.prefix = p.prefix)",
                [tenant.pk],
            )
            result.deleted = cursor.rowcount
        else:
            cursor.execute(
                _DELETE_TARGETS_SQL.replace(
                    "%s", "%s AND p.prefix IN (SELECT prefix FROM routing_import)"
                ),
                [tenant.pk],
            )
        if progress:
            progress("writing", 1, 3)
        cursor.execute(_UPSERT_SQL, [tenant.pk])
        if progress:
            progress("writing", 2, 3)
        cursor.execute(_TARGETS_SQL, [tenant.pk])
        if progress:
            progress("writing", 3, 3)
    return result


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


def text_progress(stream: TextIO, *, width: int = 30) -> Progress:
    """A plain-text progress bar on `stream`: redrawn in place on a terminal, else per 10%."""
    tty = stream.isatty()
    last: dict[str, int] = {}

    def show(stage: str, done: int, total: int) -> None:
        if total:
            share = min(done / total, 1.0)
            bar = "#" * int(share * width)
            text = f"{stage:<9} [{bar:<{width}}] {done:>9,}/{total:,} {share:4.0%}"
            step = int(share * 10)
        else:
            text, step = f"{stage:<9} {done:>9,}", done
        if tty:
            stream.write("\r" + text + ("\n" if total and done >= total else ""))
        elif last.get(stage) != step:
            stream.write(text + "\n")
        last[stage] = step
        stream.flush()

    return show
