"""The chain's physical limit: a routing engine that gives every call the same fixed answer.

    python -m bench.trivial_engine --http 127.0.0.1:PORT  [--answer FILE | --routes H:P,H:P]
    python -m bench.trivial_engine --evapi 127.0.0.1:PORT [--answer FILE | --routes H:P,H:P]
        [--nosip 127.0.0.1:SIP_PORT]

What bench/e2e_bench.py measures this project's engine against: the same Kamailio
config, the same SIPp load, and an engine that costs as little as an engine can.
One asyncio process, no framework, no parsing beyond what the wire needs:

- `--http`: an HTTP/1.1 keep-alive server. Every POST gets a 200 with
  `{"rtjson": DOCUMENT}` (a POST to .../events, the outcome batches of
  kamailio-http.cfg, a 202 `{}`). Requests may arrive pipelined or in pieces; a
  request with `Expect: 100-continue` (libcurl sends it for bodies over 1 KB) gets
  its `100 Continue` first.
- `--evapi`: a client of Kamailio's evapi socket (netstrings `LEN:payload,`). Each
  routing event gets DOCUMENT plus `"xtra": {"tindex": N, "tlabel": N}` taken from
  the event, the frame kamailio-evapi.cfg resumes the call with; outcome events
  (`"event":"sip-outcome"`) get no answer. It reconnects when the connection drops.
  With `--nosip`, each answer goes as a UDP datagram to that Kamailio SIP address
  instead (kamailio-evapi.cfg WITH_NOSIP), as the bridge's `--nosip` sends it.

DOCUMENT is the rtjson document from `--answer FILE` (e2e_bench writes the real
engine's answer for a bench call there, so both route alike), or one built from
`--routes`: serial routing over those trunks in order, each route with the failover
regex (`"failover"`) and timers the shipped configs read, as kamailio/rtjson.py
writes them. It stops on SIGTERM/SIGINT and prints what it answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import socket
import sys
from pathlib import Path

EVENTS_PATH = b"/api/v1/kamailio/events"
# Kamailio puts the transaction ids first (kamailio-evapi.cfg, route[ENGINE_QUERY]).
TRANSACTION = re.compile(rb'"tindex"\s*:\s*(\d+)\s*,\s*"tlabel"\s*:\s*(\d+)')
MAX_HEADER = 64 * 1024


def document_for(routes: list[tuple[str, int]]) -> dict:
    """A serial rtjson document over `routes` (host, port), shaped like kamailio/rtjson.py's."""
    return {
        "version": "1.0",
        "success": True,
        "decision_id": "trivial",
        "outcome": "routed",
        "routing": "serial",
        "routes": [
            {
                "uri": f"sip:bench@{host}:{port}",
                "fr_timer": 5000,
                "fr_inv_timer": 30000,
                "failover": "^(5[0-9][0-9]|408)$",
                "carrier": "trivial",
                "trunk": f"trunk-{n}",
                "trunk_id": n,
            }
            for n, (host, port) in enumerate(routes, 1)
        ],
    }


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


class Counts:
    def __init__(self) -> None:
        self.answers = 0
        self.outcomes = 0
        self.connections = 0


# --- HTTP --------------------------------------------------------------------------------


def http_response(status: bytes, body: bytes, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
        status,
        len(body),
    ) + b"Connection: %s\r\n\r\n%s" % (connection, body)


class HttpEngine(asyncio.Protocol):
    """One keep-alive connection: a fixed answer to every complete request in the buffer."""

    def __init__(self, answer: bytes, counts: Counts) -> None:
        self.answer = http_response(b"200 OK", answer)
        self.accepted = http_response(b"202 Accepted", b"{}")
        self.counts = counts
        self.buffer = b""
        self.continued = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.counts.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        close = False
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    close = True
                break
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                if not self.continued and b"\r\nexpect: 100-continue" in head:
                    out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self.continued = True
                break
            self.buffer = self.buffer[end + 4 + length :]
            self.continued = False
            if head.split(b" ", 2)[1].startswith(EVENTS_PATH):
                out.append(self.accepted)
                self.counts.outcomes += 1
            else:
                out.append(self.answer)
                self.counts.answers += 1
            if b"\r\nconnection: close" in head:
                close = True
                break
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


async def serve_http(where: tuple[str, int], document: dict, counts: Counts, stop) -> None:
    answer = json.dumps({"rtjson": document}, separators=(",", ":")).encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpEngine(answer, counts), where[0], where[1], reuse_address=True, backlog=512
    )
    print(f"trivial engine: HTTP on {where[0]}:{where[1]}", flush=True)
    async with server:
        await stop.wait()


# --- EVAPI -------------------------------------------------------------------------------


class EvapiEngine(asyncio.Protocol):
    """Kamailio's evapi connection: netstrings in, one fixed answer per routing event out."""

    def __init__(
        self,
        document: dict,
        counts: Counts,
        lost: asyncio.Future,
        quickack: bool = True,
        nosip: socket.socket | None = None,
    ) -> None:
        self.quickack = quickack
        self.nosip = nosip  # a connected UDP socket to Kamailio's SIP port
        encoded = json.dumps(document, separators=(",", ":")).encode()
        self.head = encoded[:-1] + b',"xtra":{"tindex":'
        self.counts = counts
        self.lost = lost
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.counts.connections += 1
        self.sock = transport.get_extra_info("socket")

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        # Outcome events get no answer, so no data carries the ACK of their segment:
        # a delayed ACK (up to 40 ms) would hold Kamailio's next event behind Nagle's
        # algorithm (Kamailio's evapi socket does not set TCP_NODELAY). Linux leaves
        # quick-ACK mode on its own, so it is set again after each read with no answer.
        buffer = self.buffer + data if self.buffer else data
        out = []
        start = 0
        while True:
            colon = buffer.find(b":", start)
            if colon < 0:
                break
            length = int(buffer[start:colon])
            end = colon + 1 + length
            if len(buffer) <= end:
                break
            payload = buffer[colon + 1 : end]
            start = end + 1  # the trailing comma
            if b'"sip-outcome"' in payload:
                self.counts.outcomes += 1
                continue
            match = TRANSACTION.search(payload)
            if match is None:
                event = json.loads(payload)
                ids = (b"%d" % event["tindex"], b"%d" % event["tlabel"])
            else:
                ids = match.groups()
            answer = self.head + ids[0] + b',"tlabel":' + ids[1] + b"}}"
            self.counts.answers += 1
            if self.nosip is not None:
                try:
                    self.nosip.send(answer)
                    continue
                except OSError:
                    pass  # by EVAPI, as the bridge does
            out.append(b"%d:%s," % (len(answer), answer))
        self.buffer = buffer[start:]
        if out:
            self.transport.write(b"".join(out))  # the answer carries the ACK
        elif self.quickack:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


async def connect_evapi(
    where: tuple[str, int],
    document: dict,
    counts: Counts,
    stop,
    quickack: bool = True,
    nosip: tuple[str, int] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    sender = None
    if nosip is not None:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setblocking(False)
        sender.connect(nosip)
    while not stop.is_set():
        lost = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                lambda lost=lost: EvapiEngine(document, counts, lost, quickack, sender),
                where[0],
                where[1],
            )
        except OSError:
            await asyncio.sleep(0.2)  # Kamailio not there (yet)
            continue
        print(f"trivial engine: connected to {where[0]}:{where[1]}", flush=True)
        waiting = asyncio.ensure_future(stop.wait())
        await asyncio.wait([lost, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        transport.close()
        if not stop.is_set():
            print("trivial engine: disconnected, reconnecting", flush=True)
            await asyncio.sleep(0.2)


async def main_async(args: argparse.Namespace, document: dict) -> Counts:
    counts = Counts()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.http:
        await serve_http(address(args.http), document, counts, stop)
    else:
        nosip = address(args.nosip) if args.nosip else None
        await connect_evapi(
            address(args.evapi), document, counts, stop, not args.no_quickack, nosip
        )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--http", metavar="HOST:PORT", help="Serve HTTP here.")
    where.add_argument("--evapi", metavar="HOST:PORT", help="Connect to Kamailio's evapi here.")
    answer = parser.add_mutually_exclusive_group(required=True)
    answer.add_argument("--answer", type=Path, help="The rtjson document (a JSON file).")
    answer.add_argument(
        "--routes", metavar="HOST:PORT,...", help="Serial routes to these trunks, in order."
    )
    parser.add_argument(
        "--no-quickack",
        action="store_true",
        help="EVAPI: leave delayed ACKs on (to see what they cost; see EvapiEngine).",
    )
    parser.add_argument(
        "--nosip",
        metavar="HOST:PORT",
        help="EVAPI: send answers as UDP datagrams to this Kamailio SIP address instead.",
    )
    args = parser.parse_args()
    if args.answer:
        document = json.loads(args.answer.read_text())
    else:
        document = document_for([address(a) for a in args.routes.split(",")])
    counts = asyncio.run(main_async(args, document))
    print(
        f"trivial engine: stopped; {counts.answers} answers, {counts.outcomes} outcome "
        f"messages, {counts.connections} connections",
        flush=True,
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
