"""A rate deck's row, declared once: the CSV columns, COPY staging and export derive from it.

A deck is rows of (prefix, description, rate, connect fee, initial and next
increment) plus two values that hold for the whole deck: its effective date and
its currency. The vendor files carry those two on every row, so the CSV format
accepts them as optional columns (`DECK_COLUMNS`); they are stored once, on the
deck.

Free of Django on purpose, like routing.rows: a generator outside the project's
processes (bench/rates_bench.py) writes exactly the format the importer reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

MAX_PREFIX = 32
MAX_DESCRIPTION = 200
# Money: Decimal(12, 6), so up to 999999.999999 per minute, to a millionth.
MONEY_DIGITS = 12
MONEY_PLACES = 6
MICROS = 10**MONEY_PLACES
MAX_INCREMENT = 32767  # PositiveSmallIntegerField
DEFAULT_INCREMENT = 60
ZERO = Decimal(0)


class Kind(enum.StrEnum):
    DIGITS = "digits"  # a dial prefix: ASCII digits, at least one
    TEXT = "text"
    MONEY = "money"  # a Decimal >= 0 with at most MONEY_PLACES places
    SECONDS = "seconds"  # a whole number of seconds, 1..MAX_INCREMENT


# The staging table's SQL type of each kind (rating.importing, PostgreSQL).
SQL_TYPES = {
    Kind.DIGITS: "text",
    Kind.TEXT: "text",
    Kind.MONEY: f"numeric({MONEY_DIGITS},{MONEY_PLACES})",
    Kind.SECONDS: "smallint",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a rate row: its kind, whether a file must have it, its default."""

    kind: Kind
    required: bool = False
    max_length: int | None = None
    default: Any = None
    name: str = ""  # filled in from the dataclass field


def column(kind: Kind, **options: Any) -> Any:
    spec = Column(kind, **options)
    return field(default=spec.default, metadata={"column": spec})


@dataclass(frozen=True, slots=True, kw_only=True)
class RateRow:
    """One rate of a deck: the model's columns in file order (rating.models.Rate)."""

    prefix: str = column(Kind.DIGITS, required=True, max_length=MAX_PREFIX, default="")
    description: str = column(Kind.TEXT, max_length=MAX_DESCRIPTION, default="")
    rate: Decimal = column(Kind.MONEY, required=True, default=ZERO)  # noqa: RUF009
    connect_fee: Decimal = column(Kind.MONEY, default=ZERO)  # noqa: RUF009
    initial_increment: int = column(Kind.SECONDS, default=DEFAULT_INCREMENT)
    next_increment: int = column(Kind.SECONDS, default=DEFAULT_INCREMENT)


def columns() -> tuple[Column, ...]:
    """The Columns of RateRow in declaration order, with their names."""
    found = []
    for item in fields(RateRow):
        spec: Column = item.metadata["column"]
        found.append(Column(spec.kind, spec.required, spec.max_length, spec.default, item.name))
    return tuple(found)


RATE_COLUMNS: tuple[Column, ...] = columns()
RATE_FIELDS: tuple[str, ...] = tuple(spec.name for spec in RATE_COLUMNS)
# Values of the whole deck, optional in a file: every row must then carry the same one.
EFFECTIVE_DATE = "effective_date"
CURRENCY = "currency"
DECK_COLUMNS: tuple[str, ...] = (EFFECTIVE_DATE, CURRENCY)
CSV_COLUMNS: tuple[str, ...] = (*RATE_FIELDS, *DECK_COLUMNS)
"""Every column the rate CSV format knows, in the order the export writes them."""
REQUIRED_COLUMNS: tuple[str, ...] = tuple(spec.name for spec in RATE_COLUMNS if spec.required)


def money_text(value: Decimal | int) -> str:
    """The canonical text of an amount: plain digits, no exponent, no trailing zeros."""
    text = format(Decimal(value).quantize(Decimal(1).scaleb(-MONEY_PLACES)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def micros_text(micros: int) -> str:
    """money_text() of an amount given in millionths."""
    whole, part = divmod(micros, MICROS)
    if not part:
        return str(whole)
    return f"{whole}.{part:0{MONEY_PLACES}d}".rstrip("0")
