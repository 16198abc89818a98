"""Deciding inline: a decision made from memory, or NeedsDatabase at once.

Both transports decide a call where it arrived (the EVAPI bridge's event loop, the
HTTP server's request thread) when the decision needs nothing but this process's
memory: the compiled route table, rate decks and blocklists loaded, the token known.
That saves two thread hand-offs per call. But that thread must never wait for the
database: the bridge's loop answers every other call, and the deadline could not
be kept. So, inside `memory_only()`, this thread's database connections are
replaced by a stand-in whose every use raises NeedsDatabase, before any socket is
touched (connecting included); the transport then decides that call again where
waiting is allowed (a worker thread, bounded by the decision deadline).

Whether a decision needs the database is known only by trying: the compiled table
answers a plan still loading from the database, the token cache re-reads a token
once a second. Deciding reads and never writes (the decision log is written by
its own thread), so a decision abandoned half-way leaves nothing behind.
"""

from __future__ import annotations

from django.db import connections


class NeedsDatabase(Exception):
    """The decision wanted the database where it must not wait for it."""


class _NoDatabase:
    """Stands for a database connection inside memory_only(): any use raises."""

    __slots__ = ("alias",)

    def __init__(self, alias: str) -> None:
        object.__setattr__(self, "alias", alias)

    def __getattribute__(self, name: str):
        alias = object.__getattribute__(self, "alias")
        raise NeedsDatabase(f"database {alias!r} used ({name})")

    def __setattr__(self, name: str, value) -> None:
        raise NeedsDatabase(f"database used ({name})")


class memory_only:
    """Within the block, any use of a database connection raises NeedsDatabase.

    Only this thread's connections are replaced, and they are put back as they were
    (opened or not) when the block ends, however it ends. A class rather than a
    generator: it is entered for every call, and this costs a third as much.
    """

    __slots__ = ("saved", "storage")

    def __enter__(self) -> None:
        # The storage behind connections[alias] for this thread (or this event
        # loop's context), reached once: asgiref's Local looks it up on every access.
        storage = self.storage = connections._connections._get_storage()
        saved = self.saved = []
        for alias, stand_in in _stand_ins():
            saved.append((alias, getattr(storage, alias, None)))
            setattr(storage, alias, stand_in)

    def __exit__(self, *exc_info) -> None:
        storage = self.storage
        for alias, connection in self.saved:
            if connection is None:
                delattr(storage, alias)
            else:
                setattr(storage, alias, connection)


_stand_ins_made: tuple[tuple[str, _NoDatabase], ...] = ()


def _stand_ins() -> tuple[tuple[str, _NoDatabase], ...]:
    global _stand_ins_made
    if not _stand_ins_made:
        _stand_ins_made = tuple((alias, _NoDatabase(alias)) for alias in connections.settings)
    return _stand_ins_made
