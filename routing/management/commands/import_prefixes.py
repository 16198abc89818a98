"""manage.py import_prefixes: load a routing plan's table from CSV, all or nothing.

A replace deletes every route of the plan that the file does not have, so it is
previewed first (routing.importing.preview_import: the counts, nothing written) and
asked for on a terminal; `--yes` skips the question (scripts), and without a
terminal nor `--yes` the command refuses rather than guess.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from routing.importing import (
    COLUMNS,
    ImportFailed,
    count_lines,
    import_prefixes,
    preview_import,
    routes,
    where_it_goes,
)
from routing.progress import progress_bars
from routing.services import plan_of
from tenants.models import Tenant

CONFIRMATION = "yes"


class Command(BaseCommand):
    help = (
        "Import dial prefixes from a CSV file into a tenant's routing plan (columns: "
        + ",".join(COLUMNS)
        + "; targets as carrier/trunk:priority:weight separated by |). Every row is "
        "checked first; any bad row aborts the import with every problem listed. "
        "Into a staged plan, the import writes the draft (publish it to make it live)."
    )
    stealth_options = ("stdin",)  # tests answer the question through it

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
            "in one transaction. Without it, rows are added or overwritten. Shows how "
            "many routes it deletes, changes and adds, and asks to confirm.",
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Replace without the preview and the question (for scripts; needed "
            "with --replace when stdin is not a terminal).",
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
        replace, stdin = options["replace"], options.get("stdin") or sys.stdin
        if replace and not options["yes"] and not stdin.isatty():
            raise CommandError(
                "--replace deletes the plan's routes that are not in the file, and there is "
                "no terminal to confirm it on: pass --yes to replace without the question."
            )
        progress = None if options["no_progress"] else progress_bars(self.stderr._out)
        with path.open("rb") as raw:
            total = count_lines(iter(lambda: raw.read(1 << 20), b""))
        arguments = {
            "tenant": tenant,
            "plan": plan,
            "replace": replace,
            "progress": progress,
            "total_lines": total,
        }
        self.stdout.write(where_it_goes(plan))
        expect_deleted = None
        try:
            if replace and not options["yes"]:
                preview = preview_import(lambda: _open(path), **arguments)
                self.stdout.write(f"Replacing with {path.name}: {preview.summary()}")
                self.stdout.write(
                    f"Type {CONFIRMATION} to replace (this deletes {routes(preview.deleted)}): ",
                    ending="",
                )
                self.stdout.flush()
                if stdin.readline().strip().lower() != CONFIRMATION:
                    raise CommandError("Not confirmed: nothing was imported.")
                expect_deleted = preview.deleted
            result = import_prefixes(
                lambda: _open(path), source=path.name, expect_deleted=expect_deleted, **arguments
            )
        except ImportFailed as failed:
            for error in failed.errors:
                self.stderr.write(f"{path.name}: {error}")
            more = f" (and {failed.more} more)" if failed.more else ""
            raise CommandError(
                f"{len(failed.errors)} problem(s){more} in {path.name}; nothing was imported."
            ) from None
        where = " (the draft: publish it to make it live)" if plan.published_version else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported into {tenant.slug}, plan {plan.name}{where}: {result.summary()}"
            )
        )


def _open(path: Path):
    return path.open(encoding="utf-8-sig", newline="")
