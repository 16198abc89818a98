"""Deciding inside Kamailio's own Python: the KEMI config's in-process mode.

deploy/kamailio/kemi_routing.py with ENGINE_MODE "inprocess" calls `start()` once in
each SIP worker, then `Engine.answer(fields)` for every new INVITE: the same fields
the HTTP body and the EVAPI event carry in, the same rtjson document out (as text),
from the same resolver, with no network hop and no engine process to run.

What Kamailio's app_python3 imposes, and how this module lives with it:

- Threads do not run between calls. The interpreter's lock stays with the SIP
  worker while it waits for SIP in C, so a thread of the script runs only while the
  worker is itself running Python (a thread ticking every 10 ms ticked 4 times in
  5 s). The stores that normally keep themselves current from threads (compiled
  table, rates, blocklists, decision log) are built thread-free here
  (routing.process_local.without_threads), and `Engine.answer()` brings them up to
  date itself, at most once per poll interval: `upkeep()`, one primary-key read per
  store when nothing changed, the decision log's samples written.
- Every SIP worker is a process with its own database connection. The tables are
  loaded once in Kamailio's main process before it forks (`preload()`, from the
  script's mod_init), and shared by the workers until each writes its own updates;
  or by each worker in `start()` before its first call.
- A SIP worker must never wait long: the decision is tried from memory first
  (routing.inline.memory_only); the upkeep and a decision that needs the database run
  in a pool thread, waited for at most the decision deadline
  (routing.deadline.call_within with interrupt=False: the host's signals stay the
  host's). Past it the call gets 503 "Routing Database Unavailable", as over HTTP
  and EVAPI. `answer()` never raises: whatever goes wrong is an rtjson failure.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("routing.inprocess")

# The transport name decisions are logged under (versions.decisions, metrics).
TRANSPORT = "inprocess"
# How long start() waits for the tables before the worker takes calls anyway (the
# database answers for what is still loading).
WARM_UP_SECONDS = 60.0


def start(*, warm_up: float = WARM_UP_SECONDS) -> Engine:
    """This SIP worker's engine: the preloaded one (see preload()), else one set up
    here with the tables loaded (or `warm_up` seconds spent on it).

    Call it in each SIP worker (the KEMI script's child_init). Django is set up from
    DJANGO_SETTINGS_MODULE (default config.settings) and the process's environment.
    """
    global _preloaded
    if _preloaded is not None:
        engine, _preloaded = _preloaded, None
        engine.forked()
        return engine
    engine = _set_up()
    engine.warm_up(warm_up, freeze=True)
    return engine


def preload(*, warm_up: float = WARM_UP_SECONDS) -> list[str]:
    """Load the tables once, in Kamailio's main process before it forks its workers
    (the KEMI script's mod_init); start() in each worker then adopts them.

    Every worker starts with the tables at once, and their pages stay shared with the
    main process until a worker writes them (its own updates from the change log):
    one copy of a million prefixes instead of one per worker. What is preloaded is
    frozen out of the garbage collector's sight (its passes would touch, and so
    copy, every page), and no database connection crosses the fork. Returns the
    parts still loading after `warm_up` seconds (each worker then loads them itself).
    """
    global _preloaded
    from django.db import connections

    engine = _set_up()
    loading = engine.warm_up(warm_up)
    connections.close_all()
    gc.freeze()
    _preloaded = engine
    return loading


_preloaded: Engine | None = None


def _set_up() -> Engine:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup(set_prefix=False)

    from routing import process_local

    process_local.without_threads()
    return Engine()


class Engine:
    """One SIP worker's resolver: `answer(fields)` -> rtjson text (see module doc)."""

    def __init__(self, *, table=None) -> None:
        from routing import service

        self.table = table if table is not None else service.get_route_table()
        self.poll_interval = getattr(self.table, "poll_interval", 0.2)
        self._next_upkeep = 0.0

    # --- Answers ---------------------------------------------------------------------

    def answer(self, fields: Mapping[str, Any] | str | bytes) -> str:
        """The rtjson document (JSON text) for one call's fields. Never raises."""
        from kamailio.rtjson import Failure, encode, failure_decision, to_rtjson

        started = time.perf_counter()
        try:
            decision = self._decide(fields, started)
        except Exception as exc:  # a bug must cost one call a 500, never the worker
            logger.exception("in-process routing failed")
            decision = failure_decision(Failure.ENGINE_FAILURE, repr(exc))
        return encode(to_rtjson(decision)).decode()

    def _decide(self, fields: Mapping[str, Any] | str | bytes, started: float):
        from kamailio.requests import CallFieldsError, call_request_from_fields
        from kamailio.rtjson import invalid_decision
        from routing.inline import NeedsDatabase, memory_only

        if isinstance(fields, str | bytes):
            try:
                fields = json.loads(fields)
            except ValueError as exc:
                return invalid_decision("Bad Request: fields are not JSON", str(exc))
        if not isinstance(fields, Mapping):
            problem = f"fields are a {type(fields).__name__}, not an object"
            return invalid_decision(f"Bad Request: {problem}", problem)
        try:
            call = call_request_from_fields(fields)
        except CallFieldsError as exc:
            return invalid_decision(f"Bad Request: {exc}", str(exc))

        if time.monotonic() >= self._next_upkeep:
            self._upkeep_within(started)
        try:
            with memory_only():
                return self._resolve(call)
        except NeedsDatabase:
            return self._resolve_waiting(call, started)

    def _resolve(self, call):
        from routing import service

        return service.decide(call, table=self.table, transport=TRANSPORT)

    def _resolve_waiting(self, call, started: float):
        """The decision where it may wait for the database, until the deadline."""
        from django.db import DatabaseError

        from kamailio.rtjson import Failure, failure_decision, failure_of
        from routing import deadline

        left = deadline.decision_deadline() - (time.perf_counter() - started)
        try:
            return deadline.call_within(left, self._resolve_closing, call, interrupt=False)
        except DatabaseError as exc:
            seconds = time.perf_counter() - started
            if isinstance(exc, deadline.DeadlineExceeded):
                detail = f"no decision within {seconds * 1000:.0f} ms: the database does not answer"
            else:
                detail = f"database error: {exc}"
            logger.error("in-process routing: %s; answering 503", detail)
            return failure_decision(Failure.DATABASE_UNAVAILABLE, detail)
        except Exception as exc:
            logger.exception("in-process routing failed")
            return failure_decision(failure_of(exc), repr(exc))

    def _resolve_closing(self, call):
        from django.db import DatabaseError

        try:
            return self._resolve(call)
        except DatabaseError:
            _close_connections()  # the next call reconnects
            raise

    # --- Keeping current ---------------------------------------------------------------

    def forked(self) -> None:
        """In a worker forked from the process that loaded the tables: catch up with
        the changes made since, at the first call."""
        self._next_upkeep = 0.0

    def warm_up(self, seconds: float, *, freeze: bool = False) -> list[str]:
        """Load the tables now (thread-free: in this thread); the parts still loading.
        `freeze`: a worker's own process, not a test (routing.service.warm_up)."""
        from routing import service

        try:
            return service.warm_up(seconds, freeze=freeze)
        except Exception:
            logger.exception("in-process routing: loading the tables failed; the database answers")
            return ["route table", "rates", "blocklists"]
        finally:
            self._next_upkeep = time.monotonic() + self.poll_interval

    def upkeep(self) -> None:
        """Bring this worker's stores up to the database's version, write the sampled
        decisions: what their threads do elsewhere (see module doc)."""
        from routing import service
        from versions.decisions import decision_log

        for part in (self.table, service.get_rate_source(), service.get_screen()):
            wait_ready = getattr(part, "wait_ready", None)
            if wait_ready is not None:
                wait_ready(0)
        if service.get_decision_log() is not None:
            decision_log().flush()

    def _upkeep_within(self, started: float) -> None:
        """upkeep() in the pool for at most half the deadline; a slow database delays
        freshness, never the call (it is decided from what is loaded)."""
        from routing import deadline

        self._next_upkeep = time.monotonic() + self.poll_interval
        left = deadline.decision_deadline() / 2 - (time.perf_counter() - started)
        try:
            deadline.call_within(left, self._upkeep_closing, interrupt=False)
        except Exception as exc:
            logger.warning("in-process routing: refreshing the tables failed (%s)", exc)

    def _upkeep_closing(self) -> None:
        from django.db import DatabaseError

        try:
            self.upkeep()
        except DatabaseError:
            _close_connections()  # the next upkeep reconnects
            raise


def _close_connections() -> None:
    from django.db import DatabaseError, connections

    for connection in connections.all(initialized_only=True):
        with contextlib.suppress(DatabaseError):
            connection.close()
