"""The decision deadline (settings.ROUTING_DECISION_DEADLINE_MS).

Every routing request is answered within it, 503 "Routing Database Unavailable"
when the database has not answered in time. The EVAPI bridge enforces it from its
event loop (see evapi_bridge.bridge); a web server's request thread blocked in a
database read cannot answer by itself, so `call_within()` bounds the wait: in a main
thread `database_deadline()` interrupts the read (see its doc), in any other thread
the call runs in a small pool and is waited for at most the time left.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError, connections

# psycopg waits for the server in slices of 0.1 s and handles signals between them,
# so an interruption lands up to this long after the alarm: the alarm is set this
# much before the deadline, and the answer still goes out by the deadline.
INTERRUPT_LATENCY = 0.1
# After the first signal, how often to signal again (a database call that began after
# it, such as a reconnection). Above psycopg's 0.1 s slice: a signal that interrupts
# its poll() restarts the slice, so signals sent faster would never be handled.
_TICK = 0.15

T = TypeVar("T")

logger = logging.getLogger("routing")


class DeadlineExceeded(OperationalError):
    """The database did not answer within the deadline: it hangs (a DatabaseError)."""


def decision_deadline() -> float:
    """Seconds from a routing request's arrival to its answer, at the latest."""
    return settings.ROUTING_DECISION_DEADLINE_MS / 1000


@contextlib.contextmanager
def database_deadline(seconds: float) -> Iterator[None]:
    """Within the block, a database wait still going on after `seconds` raises DeadlineExceeded.

    For a process whose main thread serves requests (gunicorn's sync workers, the
    test client). A watchdog thread signals the main thread (SIGALRM, aimed with
    pthread_kill: a process-wide timer could be delivered to any thread)
    `INTERRUPT_LATENCY` before the deadline and then every 0.15 s until the block
    ends; the handler raises only when the interrupted code is inside psycopg
    (waiting for the server, connecting), never in the middle of the engine's own
    code, so a later database call in the block (a reconnection) is interrupted too.
    The interrupted connection is in an unknown state: the caller must close it.
    Elsewhere (another thread, SIGALRM used by something else, SQLite) it does
    nothing, and the database timeouts (connect_timeout, tcp_user_timeout,
    statement_timeout) are the only bound.
    """
    watchdog = _watchdog()
    if watchdog is None or watchdog.armed:
        yield
        return
    watchdog.arm(time.monotonic() + seconds - INTERRUPT_LATENCY, seconds)
    try:
        yield
    finally:
        watchdog.disarm()


def call_within(
    seconds: float, function: Callable[..., T], *args: Any, interrupt: bool = True
) -> T:
    """`function(*args)` with its database waits bounded by `seconds`: DeadlineExceeded past it.

    For any server's request thread. In a process's main thread (gunicorn's sync
    workers, the test client) database_deadline() interrupts a wait in place. A
    server such as granian runs requests in other threads, which no signal can
    interrupt: there the call runs in a small pool of this process and is waited for
    at most `seconds`; the pool thread itself stays until its database call returns
    or times out (it must close its connection when that fails). `interrupt=False`
    takes the pool in a main thread too: for a host program whose signals are its
    own (Kamailio, kamailio.inprocess), where SIGALRM must not be taken over.
    """
    watchdog = _watchdog() if interrupt else None
    if watchdog is not None and not watchdog.armed:
        with database_deadline(seconds):
            return function(*args)
    future = _pool().submit(function, *args)
    try:
        return future.result(timeout=max(seconds, 0.0))
    except concurrent.futures.TimeoutError:
        raise DeadlineExceeded(
            f"the database did not answer within {seconds * 1000:.0f} ms"
        ) from None


def in_background(function: Callable[..., Any], *args: Any) -> None:
    """`function(*args)` in a thread of this process that may wait for the database
    (bookkeeping beside a call decided from memory); its errors are logged."""

    def run() -> None:
        try:
            function(*args)
        except Exception:
            logger.exception("background database work failed")
        finally:
            # Rare work (a token re-read a second): no connection kept for it.
            for connection in connections.all(initialized_only=True):
                with contextlib.suppress(Exception):
                    connection.close()

    _pool().submit(run)


def close_pool_connections(timeout: float = 5.0) -> None:
    """Close the database connections this process's pool threads hold (tests, before
    their database goes): one task per thread, held at a barrier so each thread runs one."""
    barrier = threading.Barrier(POOL_THREADS)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout)
        connections.close_all()

    futures = [_pool().submit(close) for _ in range(POOL_THREADS)]
    concurrent.futures.wait(futures, timeout=timeout + 1)


# Threads call_within() and in_background() use; a hung database holds them, never a request thread.
POOL_THREADS = 4
_pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """This process's pool (a forked child makes its own)."""
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(pid)
            if pool is None:
                pool = _pools[pid] = concurrent.futures.ThreadPoolExecutor(
                    POOL_THREADS, thread_name_prefix="database-deadline"
                )
    return pool


class _Watchdog:
    """One per process: signals the main thread while its deadline has passed."""

    def __init__(self) -> None:
        self.armed = False
        self.seconds = 0.0
        self._expires: float | None = None
        self._waiting_until: float | None = None  # None: idle until armed
        self._condition = threading.Condition()
        self._main = threading.main_thread().ident
        threading.Thread(target=self._run, name="decision-deadline", daemon=True).start()

    def arm(self, expires: float, seconds: float) -> None:
        self.seconds = seconds
        with self._condition:
            self._expires = expires
            self.armed = True
            # Requests follow each other: the watchdog already wakes up before this
            # deadline unless it is idle, so it is woken only then (no thread hop).
            if self._waiting_until is None or self._waiting_until > expires:
                self._condition.notify()

    def disarm(self) -> None:
        with self._condition:
            self.armed = False
            self._expires = None

    def interrupt(self, signum, frame) -> None:
        """The SIGALRM handler (main thread): raise if waiting for the database."""
        if self.armed and _in_psycopg(frame):
            raise DeadlineExceeded(
                f"the database did not answer within {self.seconds * 1000:.0f} ms"
            )

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                if self._expires is None:
                    self._waiting_until = None
                    self._condition.wait()
                elif self._expires > now:
                    self._waiting_until = self._expires
                    self._condition.wait(self._expires - now)
                else:
                    signal.pthread_kill(self._main, signal.SIGALRM)
                    self._waiting_until = now + _TICK
                    self._condition.wait(_TICK)


_watchdogs: dict[int, _Watchdog | None] = {}


def _watchdog() -> _Watchdog | None:
    """This process's watchdog, made on first use in the main thread; None if unusable."""
    pid = os.getpid()
    if pid in _watchdogs:
        return _watchdogs[pid]
    if threading.current_thread() is not threading.main_thread():
        return None
    watchdog = None
    if signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None):
        watchdog = _Watchdog()
        signal.signal(signal.SIGALRM, watchdog.interrupt)
    _watchdogs[pid] = watchdog
    return watchdog


def _in_psycopg(frame) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("psycopg"):
            return True
        frame = frame.f_back
    return False


# Bulk work (a million-row import, publish or diff) outlasts DB_STATEMENT_TIMEOUT_MS,
# which is meant for decisions and pages.
BULK_TIMEOUT_MS = 600_000


def lift_statement_timeout(using: str = "default", ms: int = BULK_TIMEOUT_MS) -> None:
    """Within a transaction on PostgreSQL: let its statements run up to `ms` (only this
    transaction: SET LOCAL ends with it). Elsewhere it does nothing."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise RuntimeError("lift_statement_timeout() needs a transaction.")
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {int(ms)}")
