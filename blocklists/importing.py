"""Import of blocklist entries from a file: every line checked, all or nothing.

Two formats (UTF-8, with or without a BOM):

- one value per line: a number (`4420123456`, a leading `+` allowed), a prefix
  (`4420*`) or, for a source list, a network (`192.0.2.0/24`, `2001:db8::/48`, an
  address alone is one host); blank lines and lines starting with `#` are skipped;
- CSV with a header row that has a `value` column and optionally a `match` column
  (`exact` or `prefix`, empty: exact; a value ending in `*` is a prefix); other
  columns are ignored.

Every bad line is reported with its line number and what is wrong (not digits, too
long, bad CIDR, a duplicate naming the first line) and nothing is written. Without
`replace` the entries are added to the list (a value already there takes the file's
match); with `replace` the list becomes exactly the file.

On PostgreSQL the checked rows stream through COPY into a staging table (duplicates
are found there, by SQL) and land with one INSERT ... SELECT, with the per-row
foreign-key triggers off when the role may (the list's row is locked by the import);
elsewhere (SQLite) bulk_create. Either way one `blocklist` change is recorded, so
each process rebuilds the list once.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from django.db import DatabaseError, connections, transaction

from blocklists import services, values
from blocklists.models import Blocklist, BlocklistEntry
from routing.deadline import BULK_TIMEOUT_MS
from routing.services import check_written, require_tenant
from tenants.scoping import tenant_of

MAX_ERRORS = 1000  # listed; the rest are counted


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportFailed(Exception):
    """Some lines are bad: nothing was written. `errors` lists them (up to MAX_ERRORS)."""

    def __init__(self, errors: list[LineError], more: int = 0, source: str = "") -> None:
        self.errors, self.more, self.source = errors, more, source
        shown = "\n".join(f"{source + ': ' if source else ''}{error}" for error in errors[:20])
        left = len(errors) + more - min(len(errors), 20)
        super().__init__(shown + (f"\n... and {left} more" if left > 0 else ""))


@dataclass
class ImportResult:
    read: int = 0  # entries in the file
    total: int = 0  # entries in the list afterwards
    replaced: bool = False

    def summary(self) -> str:
        how = "list replaced" if self.replaced else "added or updated"
        return f"{self.read} entries read ({how}), {self.total} in the list"


@dataclass
class _Checker:
    kind: str
    errors: list[LineError] = field(default_factory=list)
    more: int = 0

    def error(self, line: int, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(LineError(line, message))
        else:
            self.more += 1

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def entry(self, line: int, text: str, match: str = "") -> tuple[str, str] | None:
        text = text.strip()
        if text.endswith("*"):
            if self.kind == values.SOURCE:
                self.error(line, f"{text!r}: a source list holds networks, not prefixes")
                return None
            if match == values.EXACT:
                self.error(line, f"{text!r} ends with * but match is 'exact'")
                return None
            text, match = text[:-1], values.PREFIX
        if (  # the common case, without the general checks
            self.kind != values.SOURCE
            and text.isascii()
            and text.isdigit()
            and len(text) <= values.MAX_DIGITS
        ):
            return text, match or values.EXACT
        try:
            return values.entry_value(self.kind, text, match)
        except values.BadValue as exc:
            self.error(line, str(exc))
            return None


def read_entries(text: TextIO, checker: _Checker) -> Iterator[tuple[int, str, str]]:
    """(line, value, match) of every good entry of the file; bad lines go to `checker`."""
    lines = enumerate(text, start=1)
    header = 0
    for header, raw in lines:  # noqa: B007 (the header's line number is used below)
        first = raw.lstrip("\ufeff").strip()
        if first and not first.startswith("#"):
            break
    else:
        return
    names = [name.strip().lower() for name in next(csv.reader([first]))]
    if "value" not in names:  # one value per line
        for number, raw in itertools.chain([(header, first)], lines):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            found = checker.entry(number, line)
            if found is not None:
                yield number, *found
        return
    at_value = names.index("value")
    at_match = names.index("match") if "match" in names else None
    reader = csv.reader(raw for _, raw in lines)
    for row in reader:
        number = header + reader.line_num  # line_num counts the lines after the header
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            checker.error(number, f"{len(row)} columns, the header has {len(names)}")
            continue
        match = row[at_match].strip().lower() if at_match is not None else ""
        if match not in ("", values.EXACT, values.PREFIX, values.NETWORK):
            checker.error(number, f"match is 'exact' or 'prefix', not {match!r}")
            continue
        found = checker.entry(number, row[at_value], match)
        if found is not None:
            yield number, *found


def import_entries(
    open_text: Callable[[], TextIO],
    *,
    blocklist: Blocklist,
    replace: bool = False,
    user=None,
    source: str = "",
    using: str = "default",
) -> ImportResult:
    """Check every line of the file, then write the entries in one transaction (module doc).

    Raises ImportFailed (nothing written) when any line is bad.
    """
    require_tenant(user=user, tenant=tenant_of(blocklist))
    checker = _Checker(blocklist.kind)
    connection = connections[using]
    result = ImportResult(replaced=replace)
    try:
        with transaction.atomic(using=using):
            locked = Blocklist.objects.using(using).select_for_update().get(pk=blocklist.pk)
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    # Replacing a million entries takes longer than the statement timeout
                    # meant for decisions and pages (DB_STATEMENT_TIMEOUT_MS): lift it
                    # for this transaction only.
                    cursor.execute(f"SET LOCAL statement_timeout = {BULK_TIMEOUT_MS}")
                    result.read = _stage_postgresql(cursor, open_text, checker)
                    _duplicates_postgresql(cursor, checker)
                    if checker.failed:
                        raise _Rollback
                    if replace:
                        _delete_entries(cursor, locked)
                    _insert_staged(cursor, locked)
                else:
                    with open_text() as text:
                        rows = _unique(read_entries(text, checker), checker)
                    if checker.failed:
                        raise _Rollback
                    result.read = len(rows)
                    if replace:
                        _delete_entries(cursor, locked)
                    # In chunks: bulk_create() makes a list of everything it is given.
                    for chunk in _chunks(rows.items(), 5000):
                        BlocklistEntry.objects.using(using).bulk_create(
                            [BlocklistEntry(list=locked, value=v, match=m) for v, m in chunk],
                            update_conflicts=True,
                            unique_fields=["list", "value"],
                            update_fields=["match"],
                        )
            result.total = BlocklistEntry.objects.using(using).filter(list=locked).count()
            Blocklist.objects.using(using).filter(pk=locked.pk).update(entries_count=result.total)
            check_written(user=user, rows=[locked])
            services.record_list_change(locked, entries=True, using=using)
    except _Rollback:
        raise ImportFailed(checker.errors, checker.more, source) from None
    blocklist.entries_count = result.total
    return result


def _chunks(items, size: int) -> Iterator[tuple]:
    iterator = iter(items)
    while chunk := tuple(itertools.islice(iterator, size)):
        yield chunk


class _Rollback(Exception):
    """Bad lines were found: leave the transaction, writing nothing."""


def _unique(rows: Iterator[tuple[int, str, str]], checker: _Checker) -> dict[str, str]:
    seen: dict[str, tuple[int, str]] = {}
    for line, value, match in rows:
        if value in seen:
            checker.error(line, f"{value!r} is already on line {seen[value][0]}")
            continue
        seen[value] = (line, match)
    return {value: match for value, (_, match) in seen.items()}


def _delete_entries(cursor, blocklist: Blocklist) -> None:
    cursor.execute("DELETE FROM blocklists_blocklistentry WHERE list_id = %s", [blocklist.pk])


def _stage_postgresql(cursor, open_text: Callable[[], TextIO], checker: _Checker) -> int:
    """COPY the good entries into a staging table; returns how many."""
    cursor.execute("DROP TABLE IF EXISTS pg_temp.blocklist_import")  # an earlier import
    cursor.execute(
        "CREATE TEMP TABLE blocklist_import (line integer, value text, match text) ON COMMIT DROP"
    )
    count = 0
    with (
        open_text() as text,
        cursor.cursor.copy("COPY blocklist_import (line, value, match) FROM STDIN") as copy,
    ):
        chunk: list[str] = []
        for line, value, match in read_entries(text, checker):
            count += 1  # staged even after a bad line, so that duplicates are found too
            chunk.append(f"{line}\t{value}\t{match}\n")  # checked values: no tab, no backslash
            if len(chunk) >= 10_000:
                copy.write("".join(chunk))
                chunk.clear()
        if chunk:
            copy.write("".join(chunk))
    return count


def _duplicates_postgresql(cursor, checker: _Checker) -> None:
    cursor.execute(
        "SELECT value, array_agg(line ORDER BY line) FROM blocklist_import "
        "GROUP BY value HAVING count(*) > 1 ORDER BY min(line) LIMIT %s",
        [MAX_ERRORS + 1],
    )
    found = []
    for value, lines in cursor.fetchall():
        found += [(line, value, lines[0]) for line in lines[1:]]
    for line, value, first in sorted(found):
        checker.error(line, f"{value!r} is already on line {first}")
    checker.errors.sort(key=lambda error: error.line)


def _insert_staged(cursor, blocklist: Blocklist) -> None:
    # The list's row is locked by this transaction, so it cannot be deleted under us:
    # the per-row foreign-key checks (a million of them) prove nothing. Skip them where
    # the role may, as rating.importing does.
    unchecked = _skip_row_fk_checks(cursor)
    cursor.execute(
        "INSERT INTO blocklists_blocklistentry (list_id, value, match) "
        "SELECT %s, value, match FROM blocklist_import "
        "ON CONFLICT (list_id, value) DO UPDATE SET match = EXCLUDED.match",
        [blocklist.pk],
    )
    if unchecked:
        cursor.execute("SET LOCAL session_replication_role = origin")
    # A list can grow from nothing to a million rows at once: give the planner the new
    # figures now rather than at autovacuum's leisure (the database source's query).
    cursor.execute("ANALYZE blocklists_blocklistentry")


def _skip_row_fk_checks(cursor) -> bool:
    cursor.execute("SAVEPOINT blocklist_import_role")
    try:
        cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        cursor.execute("ROLLBACK TO SAVEPOINT blocklist_import_role")
        return False
    cursor.execute("RELEASE SAVEPOINT blocklist_import_role")
    return True
