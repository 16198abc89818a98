"""Delete outcome buckets older than OUTCOMES_RETENTION_DAYS (or --days)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from outcomes import store


class Command(BaseCommand):
    help = "Delete per-minute outcome buckets older than the retention (default 30 days)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days: int | None, **options) -> None:
        days = days or settings.OUTCOMES_RETENTION_DAYS
        deleted = store.prune(now=timezone.now(), days=days)
        self.stdout.write(f"{deleted} outcome buckets older than {days} days deleted.")
