"""manage.py import_prefixes: load a routing plan's table from CSV, all or nothing."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from routing.importing import COLUMNS, ImportFailed, count_lines, import_prefixes
from routing.progress import progress_bars
from routing.services import plan_of
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Import dial prefixes from a CSV file into a tenant's routing plan (columns: "
        + ",".join(COLUMNS)
        + "; targets as carrier/trunk:priority:weight separated by |). Every row is "
        "checked first; any bad row aborts the import with every problem listed."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file (UTF-8), as export_prefixes writes it.")
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="Tenant slug.")
        parser.add_argument(
            "--plan",
            metavar="NAME",
            help="Routing plan name; may be left out when the tenant has one plan.",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Make the plan's table exactly the file (prefixes not in it are deleted), "
            "in one transaction. Without it, rows are added or overwritten.",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {options['tenant']!r}.")
        try:
            plan = plan_of(tenant=tenant, plan=options["plan"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        progress = None if options["no_progress"] else progress_bars(self.stderr._out)
        with path.open("rb") as raw:
            total = count_lines(iter(lambda: raw.read(1 << 20), b""))
        try:
            result = import_prefixes(
                lambda: path.open(encoding="utf-8-sig", newline=""),
                tenant=tenant,
                plan=plan,
                replace=options["replace"],
                source=path.name,
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
            self.style.SUCCESS(f"Imported into {tenant.slug}, plan {plan.name}: {result.summary()}")
        )
