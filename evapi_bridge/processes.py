"""Several bridge processes under one command (`run_evapi_bridge --processes N`).

A decision is Python under one GIL: one bridge process uses one core. Kamailio
spreads calls over every connected bridge (kamailio-evapi.cfg tags each connection
and sends each call to one), so N processes, each with its own connection to every
Kamailio, its own compiled table and its own event loop, use N cores.

The parent only supervises: it forks the children (before any database connection
is opened, so none is shared), passes SIGTERM/SIGINT on to them, restarts one that
dies (after RESTART_DELAY, so a child failing at start-up does not spin), and
returns when every child has stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

logger = logging.getLogger("evapi_bridge")

RESTART_DELAY = 1.0
# After SIGTERM, how long children may take to answer what they hold before SIGKILL.
STOP_TIMEOUT = 20.0


def supervise(count: int, child: Callable[[int], int]) -> int:
    """Run `child(number)` in `count` forked processes until SIGTERM/SIGINT; exit status."""
    stopping = False
    children: dict[int, int] = {}  # pid -> number

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: its own signal handlers, its own exit
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                status = child(number)
            except BaseException:
                logger.exception("bridge process %d failed", number)
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = number
        logger.info("bridge process %d/%d started (pid %d)", number, count, pid)

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for number in range(1, count + 1):
            start(number)
        stopped_at = None
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:  # none exited: check the stop timeout, then look again
                if stopping:
                    stopped_at = stopped_at or time.monotonic()
                    if time.monotonic() - stopped_at > STOP_TIMEOUT:
                        for late in children:
                            os.kill(late, signal.SIGKILL)
                time.sleep(0.1)
                continue
            number = children.pop(pid, None)
            if number is None:
                continue
            if stopping:
                continue
            logger.error(
                "bridge process %d (pid %d) exited with status %s; restarting it in %.0f s",
                number,
                pid,
                os.waitstatus_to_exitcode(status),
                RESTART_DELAY,
            )
            time.sleep(RESTART_DELAY)
            if not stopping:
                start(number)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
