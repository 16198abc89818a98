"""manage.py run_evapi_bridge: answer Kamailio's evapi routing events until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from evapi_bridge.bridge import Bridge, BridgeConfig
from evapi_bridge.nosip import MAX_DATAGRAM, MIN_DATAGRAM
from evapi_bridge.processes import supervise
from kamailio.addresses import parse_host_port
from tenants.models import Tenant

logger = logging.getLogger("evapi_bridge")

# Worker threads decide calls (CPU work under the GIL); the event loop thread that
# reads events and writes answers must get the GIL back within a fraction of a
# millisecond, not after CPython's default 5 ms switch interval.
GIL_SWITCH_INTERVAL = 0.0005


def parse_address(text: str, option: str = "--connect") -> tuple[str, int]:
    """'host:port' or '[ipv6]:port' -> (host, port), or CommandError saying what is wrong."""
    example = "127.0.0.1:5060" if option == "--nosip" else "127.0.0.1:8448"
    try:
        return parse_host_port(text, example=example)
    except ValueError as exc:
        raise CommandError(f"{option} {text!r}: {exc}") from None


class Command(BaseCommand):
    help = (
        "Connect to Kamailio's evapi socket(s) and answer every routing event with an "
        "rtjson document. Runs until SIGTERM/SIGINT, reconnecting when Kamailio restarts."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--connect",
            action="append",
            metavar="HOST:PORT",
            help="Kamailio evapi address (its bind_addr); repeat for several Kamailios. "
            "Default: settings.EVAPI_CONNECT.",
        )
        parser.add_argument(
            "--tenant",
            metavar="SLUG",
            help="Tenant for events without source_ip (the minimal caller/callee event). "
            "Default: settings.EVAPI_DEFAULT_TENANT; with neither, such calls get 403.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=4,
            help="Threads deciding calls (each with its own database connection). Default 4.",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="Bridge processes, each connected to every Kamailio with its own compiled "
            "table (one core each); Kamailio spreads calls over all connected bridges "
            "(kamailio-evapi.cfg). Default 1; one per core on a host of its own.",
        )
        parser.add_argument(
            "--stats-interval",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="Seconds between summary lines (events, answers, errors, latency); "
            "0 turns them off. Default 60.",
        )
        parser.add_argument(
            "--max-wait",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="An event that waited longer for a worker is answered 503 without a "
            "decision, so an overloaded bridge catches up instead of deciding calls "
            "Kamailio is about to time out. Default 5. Whatever this is, every event "
            "is answered within ROUTING_DECISION_DEADLINE_MS (503 if no decision by then).",
        )

        parser.add_argument(
            "--nosip",
            action="append",
            metavar="HOST:PORT",
            help="Send answers as UDP datagrams to this Kamailio SIP address (its nosip "
            "module, kamailio-evapi.cfg WITH_NOSIP) instead of over EVAPI: one per "
            "--connect, in the same order. Default: settings.EVAPI_NOSIP (off when empty).",
        )
        parser.add_argument(
            "--nosip-max-bytes",
            type=int,
            metavar="N",
            help="Answers longer than this go over EVAPI, not by nosip. Default: "
            "settings.EVAPI_NOSIP_MAX_BYTES (1472: one Ethernet frame, no IP fragments).",
        )

    def handle(self, *args, **options):
        addresses = tuple(parse_address(a) for a in options["connect"] or settings.EVAPI_CONNECT)
        if not addresses:
            raise CommandError("No evapi address: give --connect HOST:PORT or set EVAPI_CONNECT.")
        if options["workers"] < 1:
            raise CommandError(f"--workers {options['workers']}: must be at least 1")
        if options["processes"] < 1:
            raise CommandError(f"--processes {options['processes']}: must be at least 1")
        if options["stats_interval"] < 0:
            raise CommandError("--stats-interval must be 0 (off) or a number of seconds")
        if options["max_wait"] <= 0:
            raise CommandError("--max-wait must be a positive number of seconds")
        nosip = tuple(parse_address(a, "--nosip") for a in options["nosip"] or settings.EVAPI_NOSIP)
        if nosip and len(nosip) != len(addresses):
            raise CommandError(
                f"{len(nosip)} --nosip address(es) for {len(addresses)} --connect "
                "address(es): give one --nosip per --connect, in the same order"
            )
        for host, port in nosip:
            try:  # the bridge resolves it again when it starts; a typo fails here
                socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise CommandError(f"--nosip {host}:{port}: cannot resolve ({exc})") from None
        max_bytes = options["nosip_max_bytes"] or settings.EVAPI_NOSIP_MAX_BYTES
        if not MIN_DATAGRAM <= max_bytes <= MAX_DATAGRAM:
            raise CommandError(
                f"--nosip-max-bytes {max_bytes}: must be {MIN_DATAGRAM} to {MAX_DATAGRAM} "
                "(the largest IPv4 UDP payload)"
            )
        tenant = (options["tenant"] or settings.EVAPI_DEFAULT_TENANT or "").strip() or None
        self._configure_logging(options["verbosity"])
        self._announce_tenant(tenant)
        connections.close_all()  # the workers open their own

        bridge = Bridge(
            BridgeConfig(
                addresses=addresses,
                default_tenant=tenant,
                workers=options["workers"],
                stats_interval=options["stats_interval"],
                max_wait=options["max_wait"],
                deadline=settings.ROUTING_DECISION_DEADLINE_MS / 1000,
                max_frame=settings.EVAPI_MAX_FRAME,
                freeze_gc=True,
                nosip=nosip,
                nosip_max_bytes=max_bytes,
                nosip_key=settings.EVAPI_NOSIP_KEY,
            )
        )
        if options["processes"] == 1:
            self._serve(bridge)
            return
        status = supervise(options["processes"], lambda number: self._serve(bridge))
        if status:
            raise CommandError(f"bridge processes failed (status {status})")

    def _serve(self, bridge: Bridge) -> int:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        asyncio.run(self._run(bridge))
        return 0

    async def _run(self, bridge: Bridge) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, bridge.stop)
        await bridge.run()

    def _configure_logging(self, verbosity: int) -> None:
        """-v 0: warnings only; default: LOG_LEVEL (INFO); -v 2 or 3: one line per decision."""
        if verbosity == 0:
            logger.setLevel(logging.WARNING)
        elif verbosity >= 2:
            logger.setLevel(logging.DEBUG)

    def _announce_tenant(self, slug: str | None) -> None:
        if slug is None:
            logger.info(
                "events without source_ip will be refused (403): no --tenant and "
                "EVAPI_DEFAULT_TENANT is empty"
            )
            return
        try:
            tenant = Tenant.objects.filter(slug=slug).first()
        except DatabaseError as exc:
            logger.warning(
                "cannot check tenant %r now (database error: %s); starting anyway, "
                "calls get 503 until the database answers",
                slug,
                exc,
            )
            return
        if tenant is None:
            known = list(Tenant.objects.order_by("slug").values_list("slug", flat=True)[:20])
            raise CommandError(
                f"Unknown tenant slug {slug!r} (--tenant or EVAPI_DEFAULT_TENANT); "
                f"known: {', '.join(known) or 'none'}"
            )
        if not tenant.is_active:
            logger.warning("tenant %s is inactive: events without source_ip get 403", slug)
        logger.info("events without source_ip go to tenant %s (%s)", tenant.slug, tenant.name)
