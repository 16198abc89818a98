"""Several hosts on one machine: Linux network namespaces on a bridge, and how the
project's engines are started (the same on one host or on several).

`Network` makes a bridge in the root namespace (it takes the subnet's first address)
and one namespace per host, each with a veth on the bridge; `close()` deletes them
all. Processes run in a host with `ip netns exec`. The root namespace can reach
every host through the bridge, so readiness checks run from the test process.

The machine's PostgreSQL listens on 127.0.0.1 only, which a namespace cannot reach:
`python -m tests.e2e.netns forward LISTEN TARGET` is a small TCP forwarder the test
runs in the root namespace on the bridge address (PostgreSQL sees connections from
127.0.0.1, so its loopback authentication applies).

Run as a script it is only that forwarder; importing it needs no Django.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

# --- How the engines are started (one place each: the HTTP server is being switched) ---


def http_engine_argv(bind: str, workers: int = 1) -> list[str]:
    """The HTTP routing engine (rtjson endpoint, /healthz) listening on `bind` (HOST:PORT)."""
    return [sys.executable, "manage.py", "serve_rtjson", "--bind", bind,
            "--workers", str(workers), "--access-log"]  # fmt: skip


def bridge_argv(*connect: str, verbose: bool = False) -> list[str]:
    """The EVAPI bridge connected to each Kamailio EVAPI socket in `connect` (HOST:PORT);
    `verbose`: one log line per decision, naming the Kamailio it came from."""
    argv = [sys.executable, "manage.py", "run_evapi_bridge", "--stats-interval", "0"]
    if verbose:
        argv += ["-v", "2"]
    for address in connect:
        argv += ["--connect", address]
    return argv


# --- Namespaces -----------------------------------------------------------------------


def run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def namespaces_unavailable() -> str | None:
    """Why this machine cannot run the namespace tests, or None when it can."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe = f"hap{os.getpid()}"
    try:
        run("ip", "netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` is not permitted here: {exc}"
    with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
        run("ip", "netns", "del", probe)
    return None


@dataclass
class Host:
    """A network namespace with one address on the test network."""

    namespace: str
    address: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class Network:
    """A /24 on a Linux bridge; the root namespace is .1, hosts from .11 on.

    Names carry the pid and a random suffix, so parallel runs do not collide.
    """

    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}{uuid.uuid4().hex[:2]}")
    hosts: dict[str, Host] = field(default_factory=dict)
    _links: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A subnet from the pid and the suffix, in 10.128.0.0/9 (far from usual LANs).
        seed = int(self.tag[-2:], 16) * 100000 + os.getpid() % 100000
        self.prefix = f"10.{128 + seed % 120}.{seed // 120 % 250}"
        self.gateway = f"{self.prefix}.1"
        self.cidr = f"{self.prefix}.0/24"
        self.bridge = f"hab{self.tag}"

    def create(self) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def add_host(self, label: str) -> Host:
        number = len(self.hosts) + 1
        namespace = f"ha{self.tag}-{label}"
        outside, inside = f"hav{self.tag}{number}", f"hai{self.tag}{number}"
        address = f"{self.prefix}.{10 + number}"
        run("ip", "netns", "add", namespace)
        host = Host(namespace, address)
        self.hosts[label] = host
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        self._links.append(outside)
        run("ip", "link", "set", inside, "netns", namespace)
        run("ip", "-n", namespace, "link", "set", inside, "name", "eth0")
        run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", namespace, "link", "set", "eth0", "up")
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        run("ip", "link", "set", outside, "master", self.bridge)
        run("ip", "link", "set", outside, "up")
        return host

    def link_down(self, label: str) -> None:
        """Cut a host off the network (its processes keep running)."""
        run("ip", "-n", self.hosts[label].namespace, "link", "set", "eth0", "down")

    def close(self) -> None:
        """Delete every namespace and link made here (stop their processes first)."""
        errors = []
        for host in self.hosts.values():
            try:
                run("ip", "netns", "del", host.namespace)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        for link in reversed(self._links):
            # A veth goes with its peer's namespace; the bridge is deleted here.
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                run("ip", "link", "del", link)
        if errors:
            raise RuntimeError("; ".join(errors))


def tcp_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def udp_bound(host: Host, port: int) -> bool:
    """Whether something in `host` listens on UDP `port`."""
    done = subprocess.run(
        host.argv(["ss", "-Hlun", f"sport = :{port}"]),
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return bool(done.stdout.strip())


def sip_options_answered_at(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether a SIP server on `host`:`port` (UDP) answers an OPTIONS with 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        local_host, local = sock.getsockname()
        tag = uuid.uuid4().hex[:10]
        message = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local_host}:{local};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{local_host}:{local}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: probe-{tag}@{local_host}\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        try:
            sock.send(message.encode())
            answer = sock.recv(65535)
        except OSError:
            return False
    return answer.startswith(b"SIP/2.0 200")


# --- The TCP forwarder (root namespace -> 127.0.0.1) -----------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def _forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(connected, *listen)
    print(f"forwarding {listen[0]}:{listen[1]} to {target[0]}:{target[1]}", flush=True)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "forward":
        sys.exit("usage: python -m tests.e2e.netns forward LISTEN_HOST:PORT TARGET_HOST:PORT")
    asyncio.run(_forward(_address(sys.argv[2]), _address(sys.argv[3])))
