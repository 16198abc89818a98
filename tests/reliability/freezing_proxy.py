"""A TCP proxy on 127.0.0.1 that can freeze: the database hangs instead of refusing.

`freeze()` stops forwarding bytes in both directions without closing any socket,
so a client blocks in its read exactly as with a hung server or a silent network;
`thaw()` forwards again, what was held back first. The kernel still accepts and
acknowledges the bytes the client sends, so TCP-level timeouts (keepalives,
`tcp_user_timeout`) do not fire here: only the engine's own deadlines answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class FreezingProxy:
    """Forwards 127.0.0.1:`port` to `target`; always use it through `running_proxy()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stopped = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self._acceptor = threading.Thread(target=self._accept, name="freezing-proxy", daemon=True)
        self._acceptor.start()

    @property
    def frozen(self) -> bool:
        return not self._flowing.is_set()

    def freeze(self) -> None:
        """Stop forwarding in both directions; every socket stays open."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        """Close the listener and every connection; join the threads."""
        self._stopped = True
        self._flowing.set()  # release pumps held by a freeze, so they see the closed sockets
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        self.listener.settimeout(0.05)  # closing a socket does not wake accept()
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._stopped:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
                self.connections += 1
                for source, sink in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(
                        target=self._pump, args=(source, sink), name="proxy-pump", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()  # frozen: hold the bytes, close nothing
                if self._stopped:
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side closed: close the other, as a real server or client would see.
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def running_proxy(target_host: str, target_port: int) -> Iterator[FreezingProxy]:
    proxy = FreezingProxy(target_host, target_port)
    try:
        yield proxy
    finally:
        proxy.stop()
