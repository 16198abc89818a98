"""Helpers for tests that start the project's own servers in other processes."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from django.db import connection


def child_database_url() -> str:
    """DATABASE_URL of the test database this pytest process created, for a child."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    if "postgresql" not in db["ENGINE"]:
        raise NotImplementedError(
            f"servers under test know SQLite and PostgreSQL, not {db['ENGINE']}"
        )
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{quote(db['NAME'])}"


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def database_unreachable(tmp_path: Path) -> Iterator[None]:
    """Really break this thread's database: point its connection at one that cannot be
    opened (SQLite: a file in a missing directory; PostgreSQL: a missing database)."""
    real_name = connection.settings_dict["NAME"]
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "no-such-dir" / "db.sqlite3")
    else:
        connection.settings_dict["NAME"] = "routing_database_that_does_not_exist"
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = real_name
