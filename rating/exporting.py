"""Export a rate deck as CSV in the format rating.importing reads.

Rows are ordered by prefix and amounts written in one spelling (no trailing
zeros), so export -> import (as a new deck, at another time) -> export gives the
same bytes. The deck's currency is a column (the same on every row); its effective
date is one only when asked (`with_effective`), since the same rates imported for
another time are the same file. Rows stream from a server-side cursor on
PostgreSQL: a million rates never sit in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

from django.db import connections
from django.db.models.functions import Collate

from rating.importing import when_text
from rating.models import Rate, RateDeck
from rating.rows import CURRENCY, EFFECTIVE_DATE, RATE_COLUMNS, RATE_FIELDS, Kind, money_text
from routing.importing import Progress

_MONEY_AT = tuple(i for i, spec in enumerate(RATE_COLUMNS) if spec.kind is Kind.MONEY)


def header(*, with_effective: bool = False) -> list[str]:
    return [*RATE_FIELDS, *([EFFECTIVE_DATE] if with_effective else []), CURRENCY]


def export_rows(
    deck: RateDeck, *, with_effective: bool = False, using: str = "default"
) -> Iterator[list[str]]:
    """The header, then one CSV row per rate of `deck`, by prefix."""
    yield header(with_effective=with_effective)
    tail = [when_text(deck.effective_from)] if with_effective else []
    tail.append(deck.currency)
    order = Collate("prefix", "C") if connections[using].vendor == "postgresql" else "prefix"
    rates = (
        Rate.objects.using(using)
        .filter(deck_id=deck.pk)
        .order_by(order)
        .values_list(*RATE_FIELDS)
        .iterator(chunk_size=10_000)
    )
    for values in rates:
        cells = list(map(str, values))
        for i in _MONEY_AT:
            cells[i] = money_text(values[i])
        yield cells + tail


def write_csv(
    deck: RateDeck,
    out: TextIO,
    *,
    with_effective: bool = False,
    progress: Progress | None = None,
    using: str = "default",
) -> int:
    """Write `deck` to `out`; returns the number of rates."""
    writer = csv.writer(out, lineterminator="\n")
    count = -1
    for count, row in enumerate(export_rows(deck, with_effective=with_effective, using=using)):
        writer.writerow(row)
        if progress and count and count % 50_000 == 0:
            progress("exporting", count, deck.rows)
    if progress:
        progress("exporting", max(count, 0), max(count, 0))
    return count
