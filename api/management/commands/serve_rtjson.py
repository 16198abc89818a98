"""Serve the call path (config.wsgi_rtjson) with granian: Kamailio's production HTTP server."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from kamailio.addresses import parse_host_port
from routing.metrics import empty_multiprocess_dir

TARGET = "config.wsgi_rtjson:application"


class Command(BaseCommand):
    help = (
        "Serve Kamailio's rtjson endpoint (with /healthz and /metrics) on its own port, "
        "with granian: HTTP/1.1 connections kept alive, one worker process per core. "
        "The admin and the REST API are served separately (config.wsgi)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--bind",
            default=os.environ.get("RTJSON_BIND", "127.0.0.1:8001"),
            metavar="ADDRESS:PORT",
            help="Where Kamailio connects (default: $RTJSON_BIND or 127.0.0.1:8001; "
            "[::1]:8001 for IPv6).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("RTJSON_WORKERS") or os.cpu_count() or 1),
            help="Worker processes, each with its own compiled table "
            "(default: $RTJSON_WORKERS or one per core).",
        )
        parser.add_argument(
            "--access-log",
            action="store_true",
            default=os.environ.get("RTJSON_ACCESS_LOG", "").lower() in ("1", "true", "yes"),
            help="Log every request (address, method, path, status, time) on stderr "
            "(default: $RTJSON_ACCESS_LOG, off: a line per call costs).",
        )
        parser.add_argument(
            "--backlog",
            type=int,
            default=1024,
            help="Connections waiting to be accepted (default 1024).",
        )

    def handle(
        self, *args, bind: str, workers: int, backlog: int, access_log: bool, **options
    ) -> None:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces

        try:
            host, port = parse_host_port(bind, example="127.0.0.1:8001")
        except ValueError as exc:
            raise CommandError(f"--bind {bind!r}: {exc}") from None
        if workers < 1:
            raise CommandError(f"--workers {workers}: at least 1.")
        empty_multiprocess_dir()  # as the gunicorn config does
        Granian(
            TARGET,
            address=host,
            port=port,
            interface=Interfaces.WSGI,
            http=HTTPModes.http1,
            websockets=False,
            workers=workers,
            # One Python thread per worker: decisions hold the GIL, more threads only
            # contend for it (api.fastpath waits for the database in its own pool).
            blocking_threads=1,
            backlog=backlog,
            respawn_failed_workers=True,
            log_access=access_log,
        ).serve()
