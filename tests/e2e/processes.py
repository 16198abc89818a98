"""Real processes for the end-to-end suite: start on 127.0.0.1, wait until ready, always stop.

Every process runs in its own session (process group), so stopping it also stops
its children (Kamailio's workers, gunicorn's workers). Readiness is polled (a SIP
OPTIONS answered, a port bound, a log line), never assumed after a fixed sleep.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

HOST = "127.0.0.1"


class ProcessError(AssertionError):
    """A process did not start, or did not get ready in time; the message has its log."""


# Ports are handed out below the kernel's ephemeral range: a port the kernel picks for
# bind(0) or an outgoing connection (a bridge's nosip sender, Kamailio's HTTP client)
# can then never take one between free_port() finding it free and its server binding
# it. Handed-out ports are not handed out again while their server may still hold them.
_LOWEST_PORT = 20000
_random = random.SystemRandom()
_handed_out: collections.deque[int] = collections.deque(maxlen=4000)


def _ephemeral_low() -> int:
    """The lowest port the kernel gives out by itself (32768 if it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(span: int = 1) -> int:
    """A port on 127.0.0.1 free for UDP and TCP (and the `span - 1` above it), outside
    the kernel's ephemeral range and not handed out recently."""
    highest = _ephemeral_low() - span
    for _ in range(500):
        port = _random.randint(_LOWEST_PORT, highest)
        ports = range(port, port + span)
        if any(p in _handed_out for p in ports) or not all(is_free(p) for p in ports):
            continue
        _handed_out.extend(ports)
        return port
    raise ProcessError(f"no free port found on {HOST} between {_LOWEST_PORT} and {highest}")


def is_free(port: int) -> bool:
    """Whether nothing is bound to `port` on 127.0.0.1, in UDP or TCP."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                return False
    return True


class Process:
    """A started subprocess with its combined stdout/stderr in `log_path`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        state = "running" if self.running else f"exited with {self.popen.returncode}"
        command = " ".join(self.argv)
        return f"{self.name} ({state}): {command}\n--- last lines of its log ---\n{tail}"

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float = 20.0) -> None:
        """Poll `ready` until true; fail with the log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not self.running:
                raise ProcessError(f"{what}: the process exited\n{self.describe()}")
            time.sleep(0.05)
        raise ProcessError(f"{what}: not ready after {timeout:.0f} s\n{self.describe()}")

    def wait_for_log(self, text: str, *, timeout: float = 20.0, after: int = 0) -> None:
        """Wait until `text` appears in the log (past character offset `after`)."""
        self.wait_until(
            lambda: text in self.log()[after:], what=f"{self.name}: {text!r}", timeout=timeout
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after `timeout`."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # Children may outlive a leader that exited: kill the group in any case.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)


class ProcessGroup:
    """The processes a test (or a module) started; `stop_all` stops them, newest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[Process] = []

    def start(self, name: str, argv: Sequence[str], **kwargs) -> Process:
        log_path = self.directory / f"{name}.log"
        if log_path.exists():
            log_path = self.directory / f"{name}-{uuid.uuid4().hex[:6]}.log"
        process = Process(name, argv, log_path=log_path, **kwargs)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        errors = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{process.name}: {exc}")
        self.processes.clear()
        if errors:
            raise ProcessError("could not stop: " + "; ".join(errors))


def sip_options_answered(port: int, timeout: float = 0.2) -> bool:
    """Whether a SIP server on 127.0.0.1:`port` (UDP) answers an OPTIONS with 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        local = sock.getsockname()[1]
        tag = uuid.uuid4().hex[:10]
        message = (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{HOST}:{local}>;tag={tag}\r\n"
            f"To: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: probe-{tag}@{HOST}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(message.encode(), (HOST, port))
        try:
            answer = sock.recv(65535)
        except OSError:
            return False
    return answer.startswith(b"SIP/2.0 200")


def tcp_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0
