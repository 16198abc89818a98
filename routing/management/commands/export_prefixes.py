"""manage.py export_prefixes: write a tenant's route table as CSV (import_prefixes reads it)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from routing.exporting import ExportError, write_csv
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Export a tenant's dial prefixes and targets as CSV (the format import_prefixes reads)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="Tenant slug.")
        parser.add_argument(
            "-o", "--output", default="-", help="File to write; - (default) is stdout."
        )

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        try:
            if options["output"] == "-":
                count = write_csv(tenant, sys.stdout)
                sys.stdout.flush()
            else:
                with Path(options["output"]).open("w", encoding="utf-8", newline="") as out:
                    count = write_csv(tenant, out)
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"{options['output']}: {exc.strerror}") from None
        self.stderr.write(f"Exported {count} prefixes of {tenant.slug}.")
