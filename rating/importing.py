"""Import a rate deck from CSV: check every row, then write all or nothing.

The deck is a carrier's (a vendor deck) or a routing plan's or a customer's (a sell
deck): the same format, checks and writing for both.

The format is the one vendors send (the columns are `rating.rows.CSV_COLUMNS`,
declared with the rate's row; `rating.exporting` writes the same):

    prefix,description,rate,connect_fee,initial_increment,next_increment,effective_date,currency
    33,France,0.012,0,60,60,2026-12-01T00:00:00Z,EUR
    336,France mobile,0.0451,0.01,30,6,2026-12-01T00:00:00Z,EUR

A header row is required (names in any case, any order); `prefix` and `rate` are
the required columns, the others take their defaults (no description, no connect
fee, 60/60 seconds). `effective_date` and `currency` hold for the whole deck: in a
file every row must carry the same value; the import's own `effective_from` and
`currency` arguments say it when the file does not (an `effective_from` given
overrides the file's column; a `currency` given must agree with it).

Every row is checked before anything is written and every problem is reported with
its line and column (routing.importing.RowError); one bad row and nothing is
written. The write is one transaction that also records a `deck` change
(routing.changes), so every process's rate store (rating.lookup) reloads the
owner's decks once it commits. On PostgreSQL rows stream through COPY into a
staging table and land with one set-based INSERT; elsewhere bulk_create.

Currencies: least-cost routing compares a vendor's cost with a sell rate only in
one currency, so a sell deck whose currency differs from one of the tenant's vendor
decks in force at its effective date or later is refused, naming those carriers
and their currencies (and a vendor deck likewise against the sell decks), unless
the setting RATING_ALLOW_MIXED_CURRENCIES is true (default False): then the deck is
kept, and the vendors in another currency are "not comparable" with it.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import Model, Q

from rating.currencies import currency_problem
from rating.models import DeckKind, Rate, RateDeck
from rating.rows import (
    CSV_COLUMNS,
    CURRENCY,
    EFFECTIVE_DATE,
    MAX_INCREMENT,
    MONEY_PLACES,
    RATE_COLUMNS,
    RATE_FIELDS,
    REQUIRED_COLUMNS,
    SQL_TYPES,
    Column,
    Kind,
)
from rating.services import Owner, record_deck_change
from routing.importing import MAX_ERRORS, ImportFailed, Progress, RowError, count_lines
from routing.models import Carrier, Customer, RoutingPlan
from routing.services import check_written, require_tenant

__all__ = [
    "CSV_COLUMNS",
    "DeckImportResult",
    "ImportFailed",
    "RowError",
    "count_lines",
    "currency_conflicts",
    "import_deck",
    "parse_when",
]

_MONEY = re.compile(r"(\d*)(?:\.(\d*))?")
_MAX_WHOLE_DIGITS = 12 - MONEY_PLACES
WHEN_HELP = "an ISO 8601 date or time, e.g. 2026-12-01 or 2026-12-01T00:00:00Z (UTC unless an offset is given)"  # noqa: E501


def parse_when(text: str) -> datetime | None:
    """An aware datetime from ISO 8601 text (a date is its midnight UTC), or None."""
    text = text.strip()
    if not text or not text[:4].isdigit():
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def when_text(value: datetime) -> str:
    """The export's spelling of an effective date: ISO 8601 in UTC with a Z."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Cells, by their declared kind -------------------------------------------------------


def cell_parser(spec: Column) -> Callable[[str], Any]:
    """A function from a cell's text to its value, or to a 1-tuple holding what is wrong.

    Built once per column from rating.rows, so a million rows cost one call per cell.
    Amounts stay text (their canonical spelling): COPY and Decimal() read it exactly.
    """
    name = spec.name.replace("_", " ")
    if spec.kind is Kind.DIGITS:
        limit = spec.max_length

        def parse_digits(text: str):
            if not text:
                return (f"a {name} is required",)
            if not (text.isascii() and text.isdigit()):
                return (f"{text!r}: digits only (E.164 without '+', spaces or letters)",)
            if len(text) > limit:
                return (f"at most {limit} digits",)
            return text

        return parse_digits
    if spec.kind is Kind.MONEY:
        required, default = spec.required, str(spec.default)

        def parse_money(text: str):
            if not text:
                return (f"a {name} is required",) if required else default
            match = _MONEY.fullmatch(text)
            if match is None or text == ".":
                if text.startswith("-"):
                    return (f"{text!r}: a {name} cannot be negative",)
                if re.fullmatch(r"\d+,\d+", text):
                    return (f"{text!r}: write a decimal point, e.g. {text.replace(',', '.')}",)
                return (f"{text!r}: not a number; write e.g. 0.0125",)
            whole, part = match.group(1).lstrip("0"), (match.group(2) or "").rstrip("0")
            if len(part) > MONEY_PLACES:
                return (f"{text!r}: at most {MONEY_PLACES} decimal places",)
            if len(whole) > _MAX_WHOLE_DIGITS:
                return (f"{text!r}: at most {'9' * _MAX_WHOLE_DIGITS}.{'9' * MONEY_PLACES}",)
            return f"{whole or '0'}.{part}" if part else whole or "0"

        return parse_money
    if spec.kind is Kind.SECONDS:
        default = spec.default

        def parse_seconds(text: str):
            if not text:
                return default
            if text.isascii() and text.isdigit():
                value = int(text)
                if value == 0:
                    return (f"the {name} is at least 1 second",)
                if value <= MAX_INCREMENT:
                    return value
            return (f"{text!r}: whole seconds from 1 to {MAX_INCREMENT}",)

        return parse_seconds
    limit = spec.max_length

    def parse_text(text: str):
        return (f"at most {limit} characters",) if len(text) > limit else text

    return parse_text


_PARSERS = tuple((spec.name, cell_parser(spec)) for spec in RATE_COLUMNS)

RateValues = tuple  # the parsed cells of one row, in RATE_FIELDS order


@dataclass
class DeckValue:
    """A value of the whole deck (effective date, currency) and the line that first gave it."""

    value: Any = None
    text: str = ""
    line: int = 0
    given: bool = False  # by the import's arguments rather than the file


class RateParser:
    """Checks rows one by one, remembering across rows (duplicates, the deck's values)."""

    def __init__(self, *, effective_from: datetime | None, currency: str | None) -> None:
        self.errors: list[RowError] = []
        self.more = 0
        self.columns: list[str] = []
        self.seen: dict[str, int] = {}
        self.effective = DeckValue(effective_from, "", 0, effective_from is not None)
        self.currency = DeckValue(currency, currency or "", 0, currency is not None)
        self._at: tuple[tuple[str, int], ...] = ()
        self._effective_at = self._currency_at = -1
        self._whens: dict[str, datetime | None] = {}

    def error(self, line: int, column: str, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(line, column, message))
        else:
            self.more += 1

    @property
    def failed(self) -> bool:
        return bool(self.errors or self.more)

    def header(self, names: list[str]) -> bool:
        self.columns = [name.strip().lower() for name in names]
        ok = True
        for name in self.columns:
            if name not in CSV_COLUMNS:
                self.error(1, name, f"unknown column; the columns are {', '.join(CSV_COLUMNS)}")
                ok = False
        for name in sorted({n for n in self.columns if self.columns.count(n) > 1}):
            self.error(1, name, "this column appears twice")
            ok = False
        for name in REQUIRED_COLUMNS:
            if name not in self.columns:
                self.error(1, name, f"the header has no {name} column")
                ok = False
        self._at = tuple(
            (name, self.columns.index(name) if name in self.columns else -1) for name in RATE_FIELDS
        )
        if EFFECTIVE_DATE in self.columns and not self.effective.given:
            self._effective_at = self.columns.index(EFFECTIVE_DATE)
        if CURRENCY in self.columns:
            self._currency_at = self.columns.index(CURRENCY)
        return ok

    def row(self, line: int, cells: list[str]) -> RateValues | None:
        """The checked values of a row, or None after recording its problems."""
        if len(cells) != len(self.columns):
            self.error(line, "", f"{len(cells)} fields, but the header has {len(self.columns)}")
            return None
        before = len(self.errors) + self.more
        values = []
        for (name, parse), (_, i) in zip(_PARSERS, self._at, strict=True):
            value = parse(cells[i].strip() if i >= 0 else "")
            if type(value) is tuple:
                self.error(line, name, value[0])
            values.append(value)
        prefix = values[0]
        if type(prefix) is str:
            first = self.seen.setdefault(prefix, line)
            if first != line:
                self.error(line, "prefix", f"prefix {prefix} is already on line {first}")
        if self._effective_at >= 0:
            self._deck_effective(line, cells[self._effective_at].strip())
        if self._currency_at >= 0:
            self._deck_currency(line, cells[self._currency_at].strip().upper())
        if len(self.errors) + self.more > before:
            return None
        return tuple(values)

    def _deck_effective(self, line: int, text: str) -> None:
        deck = self.effective
        if text == deck.text and deck.line:
            return  # the common case: every row carries the same text
        if text not in self._whens:
            self._whens[text] = parse_when(text)
        value = self._whens[text]
        if value is None:
            message = f"{text!r}: write {WHEN_HELP}" if text else "every row needs the date"
            self.error(line, EFFECTIVE_DATE, message)
        elif not deck.line:
            deck.value, deck.text, deck.line = value, text, line
        elif value != deck.value:
            self.error(
                line,
                EFFECTIVE_DATE,
                f"{text!r} differs from {deck.text!r} on line {deck.line}: "
                "a deck has one effective date (import the other rows as their own deck)",
            )

    def _deck_currency(self, line: int, code: str) -> None:
        deck = self.currency
        if (code == deck.text and (deck.line or deck.given)) or (deck.given and not code):
            return
        problem = currency_problem(code) if code else "a currency code is required, e.g. EUR"
        if problem:
            self.error(line, CURRENCY, problem)
        elif deck.given:
            self.error(line, CURRENCY, f"{code} here, but the import is in {deck.text}")
        elif not deck.line:
            deck.value, deck.text, deck.line = code, code, line
        else:
            self.error(
                line,
                CURRENCY,
                f"{code} differs from {deck.text} on line {deck.line}: a deck has one currency",
            )

    def finish(self) -> None:
        """The deck's own values must be known once every row is read."""
        if self.effective.value is None and not self.failed:
            self.error(
                1,
                EFFECTIVE_DATE,
                f"no effective date: add an {EFFECTIVE_DATE} column or give one ({WHEN_HELP})",
            )
        if self.currency.value is None and not self.failed:
            self.error(1, CURRENCY, f"no currency: add a {CURRENCY} column or give one, e.g. EUR")


def read_rows(
    lines: Iterable[str], parser: RateParser, progress: Progress | None = None, total: int = 0
) -> Iterator[RateValues]:
    """The valid rows of a CSV text; problems go to `parser.errors`."""
    reader = csv.reader(lines)
    line = 1
    try:
        header = next(reader, None)
        if header is None:
            parser.error(1, "", f"the file is empty; the header is {','.join(CSV_COLUMNS)}")
            return
        if not parser.header(header):
            return
        row = parser.row
        for cells in reader:
            line = reader.line_num
            if not cells or cells == [""]:
                continue
            values = row(line, cells)
            if values is not None:
                yield values
            if progress and line % 50_000 == 0:
                progress("checking", line, total)
    except UnicodeDecodeError:
        parser.error(line + 1, "", "not UTF-8 text: save the file as UTF-8 CSV")
    except csv.Error as exc:
        parser.error(reader.line_num or line, "", f"not valid CSV ({exc})")
    if progress:
        progress("checking", total or line, total or line)


# --- Writing ----------------------------------------------------------------------------


@dataclass
class DeckImportResult:
    rows: int = 0
    seconds: float = 0.0
    deck: RateDeck | None = field(default=None, repr=False)

    def summary(self) -> str:
        deck = self.deck
        when = when_text(deck.effective_from) if deck else "?"
        currency = deck.currency if deck else "?"
        return f"{self.rows} rates in {currency}, effective {when}, in {self.seconds:.1f} s"


def import_deck(
    open_text: Callable[[], TextIO],
    *,
    carrier: Carrier | None = None,
    plan: RoutingPlan | None = None,
    customer: Customer | None = None,
    effective_from: datetime | None = None,
    currency: str | None = None,
    name: str = "",
    user=None,
    progress: Progress | None = None,
    total_lines: int = 0,
    using: str = "default",
) -> DeckImportResult:
    """Check then write the CSV that `open_text()` opens as a new deck of its owner.

    The owner is exactly one of `carrier` (a vendor deck), `plan` or `customer` (a
    sell deck). Raises ImportFailed (nothing written) listing every bad row. `user`
    is who imports (None: the command line, acting for the platform); they must
    operate the owner's tenant, and the new deck is checked to be theirs before it
    is kept.
    """
    owners = [o for o in (carrier, plan, customer) if o is not None]
    if len(owners) != 1:
        raise ValueError("import_deck() needs exactly one of carrier, plan or customer")
    owner_row = owners[0]
    owner = Owner.of(owner_row)
    require_tenant(user=user, tenant=owner_row.tenant)
    if effective_from is not None and effective_from.tzinfo is None:
        raise ValueError("effective_from must be an aware datetime")
    started = time.monotonic()
    parser = RateParser(
        effective_from=effective_from, currency=currency.upper() if currency else None
    )
    if currency and currency_problem(currency.upper()):
        parser.error(0, CURRENCY, currency_problem(currency.upper()))
        raise ImportFailed(parser.errors)
    connection = connections[using]
    result = DeckImportResult()
    try:
        with transaction.atomic(using=using):
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    lock = _LOCK_CLASSES[owner.field]
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [lock, owner.id])
                    result.rows = _stage_postgresql(
                        cursor, open_text, parser, progress, total_lines
                    )
                    deck = _create_deck(parser, owner_row, owner, name, user, result.rows, using)
                    _insert_staged(cursor, deck, progress)
            else:
                with open_text() as text:
                    rows = list(read_rows(text, parser, progress, total_lines))
                result.rows = len(rows)
                deck = _create_deck(parser, owner_row, owner, name, user, result.rows, using)
                _write_generic(rows, deck, using)
                if progress:
                    progress("writing", 1, 1)
            record_deck_change(owner, owner_row.tenant_id, using)
            check_written(user=user, rows=[deck])
    except IntegrityError as exc:  # e.g. another import of a deck at the same time won
        raise ImportFailed([RowError(0, "", f"the database refused the deck: {exc}")]) from None
    result.deck = deck
    result.seconds = time.monotonic() - started
    return result


# pg_advisory_xact_lock(class, owner id): one import at a time per owner.
_LOCK_CLASSES = {"carrier": 7, "plan": 8, "customer": 9}


def currency_conflicts(
    *, tenant_id: int, kind: str, currency: str, effective_from: datetime, using: str = "default"
) -> list[RateDeck]:
    """The decks of the other kind (sell for a vendor deck, vendor for a sell deck) of
    the tenant, in force at `effective_from` or later, in another currency than
    `currency`: the ones a new deck could not be compared with."""
    other = DeckKind.SELL if kind == DeckKind.VENDOR else DeckKind.VENDOR
    decks = RateDeck.objects.using(using).filter(tenant_id=tenant_id).of_kind(other)
    in_force = RateDeck.objects.using(using).filter(tenant_id=tenant_id).of_kind(other)
    in_force = in_force.in_force_at(effective_from).values("pk")
    return list(
        decks.filter(Q(effective_from__gt=effective_from) | Q(pk__in=in_force))
        .exclude(currency=currency)
        .select_related("carrier", "plan", "customer")
        .order_by("carrier__name", "plan__name", "customer__name", "effective_from")
    )


def mixed_currencies_allowed() -> bool:
    return bool(getattr(settings, "RATING_ALLOW_MIXED_CURRENCIES", False))


def _currency_message(kind: str, currency: str, conflicts: list[RateDeck]) -> str:
    seen: dict[str, str] = {}
    for deck in conflicts:
        seen.setdefault(deck.owner_label(), deck.currency)
    named = ", ".join(f"{label} ({code})" for label, code in seen.items())
    if kind == DeckKind.SELL:
        what, others = "this sell deck", "the tenant's vendor decks in force"
    else:
        what, others = "this vendor deck", "the tenant's sell decks in force"
    return (
        f"{what} is in {currency}, but {others} are in another currency: {named}. "
        "Least-cost routing compares a vendor's cost with a sell rate in one currency only; "
        "import the deck in the same currency (there is no conversion), or set "
        "RATING_ALLOW_MIXED_CURRENCIES = True to keep mixed currencies (those decks are "
        "then not comparable)"
    )


def _create_deck(
    parser: RateParser,
    owner_row: Model,
    owner: Owner,
    name: str,
    user,
    rows: int,
    using: str,
) -> RateDeck:
    parser.finish()
    kind = DeckKind.VENDOR if owner.field == "carrier" else DeckKind.SELL
    if not parser.failed:
        effective = parser.effective
        taken = RateDeck.objects.using(using).filter(**owner.filter, effective_from=effective.value)
        if taken.exists():
            where = f"line {effective.line}'s date" if effective.line else "the effective date"
            label = owner_row if owner.field == "carrier" else f"{owner.field} {owner_row}"
            parser.error(
                effective.line,
                EFFECTIVE_DATE,
                f"{label} already has a deck effective at {when_text(effective.value)} "
                f"({where}); delete it first or pick another time",
            )
    if not parser.failed and not mixed_currencies_allowed():
        conflicts = currency_conflicts(
            tenant_id=owner_row.tenant_id,
            kind=kind,
            currency=parser.currency.value,
            effective_from=parser.effective.value,
            using=using,
        )
        if conflicts:
            message = _currency_message(kind, parser.currency.value, conflicts)
            parser.error(parser.currency.line, CURRENCY, message)
    if parser.failed:
        raise ImportFailed(parser.errors, parser.more)
    return RateDeck.objects.using(using).create(
        tenant_id=owner_row.tenant_id,
        **{owner.field: owner_row},
        name=name[:255],
        currency=parser.currency.value,
        effective_from=parser.effective.value,
        created_by=user if getattr(user, "pk", None) else None,
        rows=rows,
    )


_STAGE_SQL = (
    "CREATE TEMP TABLE rating_import ("
    + ", ".join(f"{spec.name} {SQL_TYPES[spec.kind]}" for spec in RATE_COLUMNS)
    + ") ON COMMIT DROP"
)
_FIELDS = ", ".join(RATE_FIELDS)
_INSERT_SQL = (
    f"INSERT INTO rating_rate (deck_id, {_FIELDS}) "  # noqa: S608 (names from rating.rows)
    f"SELECT %s, {_FIELDS} FROM rating_import"
)
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_TEXT_AT = tuple(i for i, spec in enumerate(RATE_COLUMNS) if spec.kind is Kind.TEXT)


def _copy_line(values: RateValues) -> str:
    cells = list(map(str, values))
    for i in _TEXT_AT:
        cells[i] = cells[i].translate(_COPY_ESCAPES)
    return "\t".join(cells) + "\n"


def _stage_postgresql(
    cursor,
    open_text: Callable[[], TextIO],
    parser: RateParser,
    progress: Progress | None,
    total_lines: int,
) -> int:
    """COPY the checked rows into a staging table; returns how many (raises on bad rows)."""
    cursor.execute("DROP TABLE IF EXISTS pg_temp.rating_import")  # an earlier import
    cursor.execute(_STAGE_SQL)
    count = 0
    with (
        open_text() as text,
        cursor.cursor.copy(f"COPY rating_import ({_FIELDS}) FROM STDIN") as copy,
    ):
        lines: list[str] = []
        for values in read_rows(text, parser, progress, total_lines):
            if parser.failed:
                continue  # keep checking, stop writing: nothing will be kept
            count += 1
            lines.append(_copy_line(values))
            if len(lines) >= 5000:
                copy.write("".join(lines))
                lines.clear()
        if lines and not parser.failed:
            copy.write("".join(lines))
    return count


def _insert_staged(cursor, deck: RateDeck, progress: Progress | None) -> None:
    """Move the staged rows into the new deck with one statement."""
    if progress:
        progress("writing", 0, 1)
    # The deck row was created by this transaction: nobody else can see it, let alone
    # delete it, so the per-row foreign-key checks (a million of them, run at commit)
    # prove nothing. Skip them where the role may (see _skip_row_fk_checks).
    unchecked = _skip_row_fk_checks(cursor)
    cursor.execute(_INSERT_SQL, [deck.pk])
    if unchecked:
        cursor.execute("SET LOCAL session_replication_role = origin")
    if progress:
        progress("writing", 1, 1)


def _skip_row_fk_checks(cursor) -> bool:
    """Turn off per-row triggers for the insert when the role may (as routing.importing)."""
    cursor.execute("SAVEPOINT rating_import_role")
    try:
        cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        cursor.execute("ROLLBACK TO SAVEPOINT rating_import_role")
        return False
    cursor.execute("RELEASE SAVEPOINT rating_import_role")
    return True


_MONEY_AT = tuple(i for i, spec in enumerate(RATE_COLUMNS) if spec.kind is Kind.MONEY)


def _write_generic(rows: list[RateValues], deck: RateDeck, using: str) -> None:
    """bulk_create for databases without COPY (SQLite: the demo and the tests)."""

    def rate(values: RateValues) -> Rate:
        fields = dict(zip(RATE_FIELDS, values, strict=True))
        for i in _MONEY_AT:
            fields[RATE_FIELDS[i]] = Decimal(values[i])
        return Rate(deck=deck, **fields)

    Rate.objects.using(using).bulk_create(map(rate, rows), batch_size=1000)
