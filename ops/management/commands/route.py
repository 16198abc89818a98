"""manage.py route: try a call against the live route table from the shell."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from kamailio.rtjson import to_rtjson
from routing.resolver import CallRequest
from routing.service import decide


def _instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Show where a call would go and why, and the rtjson document Kamailio would get. "
        "Give the call's source IP (as Kamailio sees it) or a tenant slug; the customer is "
        "recognised as for a real call, or named with --customer, or --plan routes by a plan."
    )

    def add_arguments(self, parser):
        parser.add_argument("--callee", required=True, help="Dialled number, e.g. +33612345678.")
        parser.add_argument("--caller", default="", help="Calling number (From user).")
        parser.add_argument("--source-ip", default=None, help="Source IP of the INVITE.")
        parser.add_argument("--source-port", type=int, default=None, help="Source port ($sp).")
        parser.add_argument("--tenant", default=None, help="Tenant slug, instead of --source-ip.")
        parser.add_argument("--account", default="", help="The account header's value.")
        parser.add_argument("--customer", default=None, help="Customer name (skips recognition).")
        parser.add_argument("--plan", default=None, help="Routing plan name (no customer).")
        parser.add_argument("--call-id", default="", help="Call-ID (seeds the weighted order).")
        parser.add_argument(
            "--at",
            default=None,
            type=_instant,
            help="The call's time, ISO 8601 (e.g. 2026-06-01T21:30+02:00; without an offset: "
            "UTC). Default: now. Decides which scheduled routes and targets are in force.",
        )
        parser.add_argument("--json", action="store_true", help="Print only the rtjson document.")

    def handle(self, *args, **options):
        if not options["source_ip"] and not options["tenant"]:
            raise CommandError("Give --source-ip or --tenant: a call belongs to a tenant.")
        decision = decide(
            CallRequest(
                callee=options["callee"],
                caller=options["caller"],
                source_ip=options["source_ip"],
                source_port=options["source_port"],
                tenant=options["tenant"],
                account=options["account"],
                customer=options["customer"],
                plan=options["plan"],
                call_id=options["call_id"],
                at=options["at"],
            )
        )
        document = json.dumps(to_rtjson(decision), indent=2)
        if options["json"]:
            self.stdout.write(document)
            return
        style = self.style.SUCCESS if decision.success else self.style.WARNING
        self.stdout.write(style(f"{decision.outcome}: {decision.code} {decision.reason}"))
        for step in decision.trace:
            self.stdout.write(f"  - {step}")
        for number, route in enumerate(decision.routes, start=1):
            self.stdout.write(f"  {number}. {route.carrier}/{route.trunk}: {route.uri}")
        self.stdout.write(document)
        if not decision.success:
            # A script can tell a refused call from a routed one.
            raise SystemExit(1)
