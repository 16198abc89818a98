"""One instance per process and database alias, for the per-process stores that
answer calls from memory (the compiled route table, the rate store, the blocklist
store, the decision log): a forked worker builds its own instead of sharing its
parent's threads.

Each store normally keeps itself current from threads of its own (a poller, a
builder, a writer). A host whose threads run only while it is itself running Python
has no use for them: Kamailio's app_python3 keeps the interpreter's lock between
two calls into the script, so a thread there stalls until the next call (measured:
a thread ticking every 10 ms ticked 4 times in 5 s). `without_threads()` makes the
stores this process builds afterwards work inline instead (kamailio.inprocess calls
it, then brings them up to date itself between calls); having no threads, they are
also inherited by forked children rather than built again in each.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)
T = TypeVar("T")


_threads_allowed = True


def without_threads() -> None:
    """The stores this process builds from now on start no threads (see module doc)."""
    global _threads_allowed
    _threads_allowed = False


def allow_threads() -> None:
    """Undo without_threads() (tests)."""
    global _threads_allowed
    _threads_allowed = True


def threads_allowed() -> bool:
    """Whether a store built now may keep itself current from threads of its own."""
    return _threads_allowed


class ProcessLocal(Generic[T]):
    """`get(using)` builds an instance with `factory(using)` once per (process, alias)."""

    def __init__(self, factory: Callable[[str], T]) -> None:
        self.factory = factory
        self.instances: dict[tuple[int, str], T] = {}
        self._lock = threading.Lock()

    def get(self, using: str = "default") -> T:
        # Without threads nothing stops a forked child from using what its parent
        # loaded (kamailio.inprocess.preload: the pages stay shared until written).
        key = (os.getpid() if _threads_allowed else 0, using)
        instance = self.instances.get(key)
        if instance is None:
            with self._lock:
                instance = self.instances.get(key)
                if instance is None:
                    instance = self.instances[key] = self.factory(using)
        return instance

    def forget(self) -> list[T]:
        """Drop every instance (tests switch databases); the dropped ones, to stop them."""
        with self._lock:
            dropped = list(self.instances.values())
            self.instances.clear()
        return dropped


def close_connection(using: str) -> None:
    """Close this thread's connection; a dead server can fail even the close."""
    try:
        connections[using].close()
    except DatabaseError:
        logger.debug("closing a broken database connection failed", exc_info=True)
