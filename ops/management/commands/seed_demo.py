"""manage.py seed_demo: load the demo tenants, route tables and users."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from outcomes.demo import seed_traffic
from rating.demo import seed_rates
from routing.demo import seed_demo
from tenants.models import Tenant
from versions.demo import seed_versions


class Command(BaseCommand):
    help = (
        "Create or refresh the demo tenants, carriers, plans, customers, prefixes, rate "
        "decks and users, three hours of made-up call outcomes for the live traffic page, and "
        "a staged plan with route tests, sampled decisions and a draft change (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin-password", default="admin", help="Password of a newly created 'admin'."
        )
        parser.add_argument(
            "--operator-password",
            default="operator",
            help="Password of newly created tenant operators (acme-operator, globex-operator).",
        )

    def handle(self, *args, admin_password: str, operator_password: str, **options):
        result = seed_demo(admin_password=admin_password, operator_password=operator_password)
        seed_rates(Tenant.objects.get(slug="globex"))
        events = sum(seed_traffic(tenant) for tenant in Tenant.objects.order_by("pk"))
        samples = seed_versions(Tenant.objects.get(slug="globex"))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {result.tenants} tenants, {result.prefixes} prefixes, "
                f"{events} outcome events, {samples} sampled decisions, users "
                f"{', '.join(result.users)}."
            )
        )
