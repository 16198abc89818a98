"""manage.py export_prefixes: write a routing plan's table as CSV (import_prefixes reads it)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from routing.exporting import ExportError, write_csv
from routing.services import plan_of
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Export a routing plan's dial prefixes and targets as CSV (the format "
        "import_prefixes reads)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="Tenant slug.")
        parser.add_argument(
            "--plan",
            metavar="NAME",
            help="Routing plan name; may be left out when the tenant has one plan.",
        )
        parser.add_argument(
            "-o", "--output", default="-", help="File to write; - (default) is stdout."
        )

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        try:
            plan = plan_of(tenant=tenant, plan=options["plan"])
            if options["output"] == "-":
                count = write_csv(tenant, sys.stdout, plan=plan)
                sys.stdout.flush()
            else:
                with Path(options["output"]).open("w", encoding="utf-8", newline="") as out:
                    count = write_csv(tenant, out, plan=plan)
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        except OSError as exc:
            raise CommandError(f"{options['output']}: {exc.strerror}") from None
        self.stderr.write(f"Exported {count} prefixes of {tenant.slug}, plan {plan.name}.")
