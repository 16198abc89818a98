"""manage.py export_rates: write a rate deck as CSV (the format import_rates reads).

A carrier's (vendor) deck with --carrier, a sell deck with --plan or --customer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from rating.exporting import write_csv
from rating.importing import WHEN_HELP, parse_when
from rating.services import Owner, deck_in_force, owner_named
from routing.models import Carrier


class Command(BaseCommand):
    help = (
        "Export the rate deck a carrier, plan or customer has in force at a time "
        "(now by default) as CSV. "
        "export, import_rates (as a new deck), export gives the same bytes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="Tenant slug.")
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--carrier", metavar="NAME", help="A vendor deck of this carrier.")
        owner.add_argument("--plan", metavar="NAME", help="A sell deck of this routing plan.")
        owner.add_argument("--customer", metavar="NAME", help="A sell deck of this customer.")
        parser.add_argument(
            "--at", metavar="ISO8601", help=f"The deck in force at this time: {WHEN_HELP}."
        )
        parser.add_argument(
            "--with-effective",
            action="store_true",
            help="Add the effective_date column (the deck's own date on every row).",
        )
        parser.add_argument("-o", "--output", metavar="FILE", help="Write here instead of stdout.")

    def handle(self, *args, **options):
        try:
            owner = owner_named(
                tenant=options["tenant"],
                carrier=options["carrier"],
                plan=options["plan"],
                customer=options["customer"],
            )
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        at = timezone.now()
        if options["at"]:
            at = parse_when(options["at"])
            if at is None:
                raise CommandError(f"--at {options['at']!r}: write {WHEN_HELP}.")
        deck = deck_in_force(Owner.of(owner), at)
        if deck is None:
            label = owner if isinstance(owner, Carrier) else f"{Owner.of(owner).field} {owner}"
            raise CommandError(f"{label} has no rate deck in force at {at.isoformat()}.")
        with_effective = options["with_effective"]
        try:
            if options["output"] in (None, "-"):
                count = write_csv(deck, sys.stdout, with_effective=with_effective)
                sys.stdout.flush()
            else:
                with Path(options["output"]).open("w", encoding="utf-8", newline="") as out:
                    count = write_csv(deck, out, with_effective=with_effective)
        except OSError as exc:
            raise CommandError(f"{options['output']}: {exc.strerror}") from None
        self.stderr.write(f"Exported {count} rates of {deck}.")
