"""The entry point every transport calls: route one call with the configured table.

Also the decision deadline (settings.ROUTING_DECISION_DEADLINE_MS): every routing
request is answered within it, 503 "Routing Database Unavailable" when the database
has not answered in time. The EVAPI bridge enforces it from its event loop (see
evapi_bridge.bridge); a web worker blocked in a database read cannot answer by
itself, so `database_deadline()` interrupts that read (see its doc).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import OperationalError
from django.utils.module_loading import import_string

from routing.compiled import compiled_route_table
from routing.resolver import CallRequest, Decision, RouteTable, RoutingDefaults, resolve
from routing.tables import DatabaseRouteTable

# psycopg waits for the server in slices of 0.1 s and handles signals between them,
# so an interruption lands up to this long after the alarm: the alarm is set this
# much before the deadline, and the answer still goes out by the deadline.
INTERRUPT_LATENCY = 0.1
# After the first alarm, how often to look again for a database wait to interrupt.
_TICK = 0.01


class DeadlineExceeded(OperationalError):
    """The database did not answer within the deadline: it hangs (a DatabaseError)."""


def get_route_table() -> RouteTable:
    """The route table named by settings.ROUTING_TABLE: "database", "compiled" or a dotted path."""
    name = settings.ROUTING_TABLE
    if name == "database":
        return DatabaseRouteTable()
    if name == "compiled":
        return compiled_route_table()  # one per process, kept current
    return import_string(name)()


def routing_defaults() -> RoutingDefaults:
    """The platform's defaults, read from settings at call time."""
    return RoutingDefaults(
        fr_timer=settings.ROUTING_FR_TIMER or None,
        fr_inv_timer=settings.ROUTING_FR_INV_TIMER or None,
    )


def decide(request: CallRequest, *, table: RouteTable | None = None) -> Decision:
    """Resolve `request` against the configured route table and platform defaults."""
    return resolve(request, table=table or get_route_table(), defaults=routing_defaults())


def decision_deadline() -> float:
    """Seconds from a routing request's arrival to its answer, at the latest."""
    return settings.ROUTING_DECISION_DEADLINE_MS / 1000


@contextlib.contextmanager
def database_deadline(seconds: float) -> Iterator[None]:
    """Within the block, a database wait still going on after `seconds` raises DeadlineExceeded.

    For a process whose main thread serves requests (gunicorn's sync workers, the
    test client): a SIGALRM timer fires `INTERRUPT_LATENCY` before the deadline, and
    its handler raises only when the interrupted code is inside psycopg (waiting for
    the server, connecting), never in the middle of the engine's own code; the timer
    then fires every 10 ms until the block ends, so a later database call in the
    block (a reconnection) is interrupted too. The interrupted connection is in
    an unknown state: the caller must close it. Elsewhere (another thread, a
    SIGALRM already in use, no psycopg) it does nothing, and the database timeouts
    (connect_timeout, tcp_user_timeout, statement_timeout) are the only bound.
    """
    if (
        "psycopg" not in sys.modules
        or threading.current_thread() is not threading.main_thread()
        or signal.getitimer(signal.ITIMER_REAL)[0] > 0
    ):
        yield
        return
    expires = time.monotonic() + seconds - INTERRUPT_LATENCY

    def interrupt(signum, frame) -> None:
        if _in_psycopg(frame):
            raise DeadlineExceeded(f"the database did not answer within {seconds * 1000:.0f} ms")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(expires - time.monotonic(), 0.001), _TICK)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)


def _in_psycopg(frame) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("psycopg"):
            return True
        frame = frame.f_back
    return False
