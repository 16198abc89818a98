"""manage.py import_blocklist: load a blocklist's entries from a file, all or nothing."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from blocklists.importing import ImportFailed, import_entries
from blocklists.services import list_named


class Command(BaseCommand):
    help = (
        "Import entries into a tenant's blocklist from a file: one value per line (a "
        "number, a prefix ending in *, or for a source list a network), or CSV with a "
        "header that has a 'value' column (and optionally 'match': exact or prefix). "
        "Every line is checked first; any bad line aborts the import with every problem "
        "listed. Entries are added to the list unless --replace makes it exactly the file."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="Tenant slug.")
        parser.add_argument("list", help="Name of the tenant's blocklist.")
        parser.add_argument("file", help="UTF-8 text or CSV file.")
        parser.add_argument(
            "--replace", action="store_true", help="Entries not in the file are deleted."
        )

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            blocklist = list_named(tenant=options["tenant"], name=options["list"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        started = time.monotonic()
        try:
            result = import_entries(
                lambda: path.open(encoding="utf-8-sig", newline=""),
                blocklist=blocklist,
                replace=options["replace"],
                source=path.name,
            )
        except ImportFailed as exc:
            raise CommandError(f"nothing imported:\n{exc}") from None
        except UnicodeDecodeError as exc:
            problem = f"{path.name}: not UTF-8 ({exc.reason} at byte {exc.start})"
            raise CommandError(problem) from None
        self.stdout.write(
            f"{blocklist.tenant.slug} / {blocklist.name}: {result.summary()} "
            f"in {time.monotonic() - started:.1f} s"
        )
