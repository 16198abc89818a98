"""manage.py import_rates: load a new rate deck from CSV, all or nothing.

A vendor deck with --carrier, a sell deck with --plan or --customer.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from rating.importing import (
    CSV_COLUMNS,
    WHEN_HELP,
    ImportFailed,
    count_lines,
    import_deck,
    parse_when,
)
from rating.services import Owner, owner_named
from routing.progress import progress_bars


class Command(BaseCommand):
    help = (
        "Import a rate deck from a CSV file with a header row (columns: "
        + ",".join(CSV_COLUMNS)
        + "; prefix and rate are required). Every row is checked first; any bad row "
        "aborts the import with every problem listed. A carrier's deck (--carrier) is "
        "what the vendor charges; a plan's (--plan) or a customer's (--customer) is what "
        "customers pay (sell rates). The deck is in force from its effective date until "
        "its owner's next deck."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="CSV file (UTF-8), as vendors send it or export_rates writes it."
        )
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="Tenant slug.")
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--carrier", metavar="NAME", help="A vendor deck of this carrier.")
        owner.add_argument("--plan", metavar="NAME", help="A sell deck of this routing plan.")
        owner.add_argument(
            "--customer", metavar="NAME", help="A sell deck of this customer (replaces its plan's)."
        )
        parser.add_argument(
            "--effective",
            metavar="ISO8601",
            help=f"When the deck takes effect: {WHEN_HELP}. "
            "Overrides the file's effective_date column.",
        )
        parser.add_argument(
            "--currency",
            metavar="CODE",
            help="ISO 4217 currency of the deck when the file has no currency column (e.g. EUR).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            owner = owner_named(
                tenant=options["tenant"],
                carrier=options["carrier"],
                plan=options["plan"],
                customer=options["customer"],
            )
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        effective = None
        if options["effective"]:
            effective = parse_when(options["effective"])
            if effective is None:
                raise CommandError(f"--effective {options['effective']!r}: write {WHEN_HELP}.")
        progress = None if options["no_progress"] else progress_bars(self.stderr._out)
        with path.open("rb") as raw:
            total = count_lines(iter(lambda: raw.read(1 << 20), b""))
        try:
            result = import_deck(
                lambda: path.open(encoding="utf-8-sig", newline=""),
                **{Owner.of(owner).field: owner},
                effective_from=effective,
                currency=options["currency"],
                name=path.name,
                progress=progress,
                total_lines=total,
            )
        except ImportFailed as failed:
            for error in failed.errors:
                self.stderr.write(f"{path.name}: {error}")
            more = f" (and {failed.more} more)" if failed.more else ""
            raise CommandError(
                f"{len(failed.errors)} problem(s){more} in {path.name}; nothing was imported."
            ) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported a deck for {owner.tenant.slug}/{result.deck.owner_label()}: "
                f"{result.summary()}"
            )
        )
