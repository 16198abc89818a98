"""A fake of Kamailio's evapi side: a real TCP server on 127.0.0.1 that the bridge joins.

It frames events as Kamailio does (`LEN:json,`) and parses answers with its own
few lines of netstring code, so the bridge's codec is not checked by itself.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any


def frame(event: dict[str, Any] | bytes) -> bytes:
    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    return b"%d:%s," % (len(payload), payload)


class KamailioClient:
    """Kamailio's end of one engine connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_events(self, *events: dict[str, Any] | bytes) -> None:
        self.send(b"".join(frame(event) for event in events))

    def answers(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Read exactly `count` answers (fails on timeout or if the bridge hangs up)."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            while len(found) < count and b":" in self.buffer:
                length, _, rest = self.buffer.partition(b":")
                size = int(length)
                if len(rest) <= size:
                    break
                assert rest[size : size + 1] == b",", f"bad answer frame: {self.buffer[:80]!r}"
                found.append(json.loads(rest[:size]))
                self.buffer = rest[size + 1 :]
            if len(found) == count:
                return found
            chunk = self._recv(deadline)
            assert chunk, f"the bridge closed the connection after {len(found)}/{count} answers"
            self.buffer += chunk

    def read_until_closed(self, timeout: float = 20.0) -> bytes:
        """Everything the bridge still sends, until it closes the connection."""
        deadline = time.monotonic() + timeout
        while chunk := self._recv(deadline):
            self.buffer += chunk
        data, self.buffer = self.buffer, b""
        return data

    def nothing_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.buffer += chunk
        return False

    def _recv(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer from the bridge in time")
        self.sock.settimeout(remaining)
        return self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


class FakeKamailio:
    """The evapi listening socket (`bind_addr`): the bridge connects to it."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.clients: list[KamailioClient] = []

    def accept(self, timeout: float = 20.0) -> KamailioClient:
        self.server.settimeout(timeout)
        sock, _ = self.server.accept()
        client = KamailioClient(sock)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        """Kamailio goes away: the listener and every connection close."""
        for client in self.clients:
            client.close()
        self.server.close()

    def restart(self) -> FakeKamailio:
        """Kamailio comes back on the same port."""
        self.stop()
        return FakeKamailio(self.port)
