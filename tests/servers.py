"""Helpers for tests that start the project's own servers in other processes."""

from __future__ import annotations

import socket
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
