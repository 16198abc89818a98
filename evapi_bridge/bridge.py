"""The EVAPI bridge: TCP clients of Kamailio's evapi sockets, answering routing events.

Kamailio is the server; the bridge connects to each address, keeps reconnecting
with a capped backoff, and answers every routing event on the connection it
came from.

Threads: the asyncio loop reads, frames and writes (its transports keep reading
while a write is pending, which Kamailio's blocking dispatcher needs), and decides
in place every event whose decision needs only memory (the compiled table loaded:
routing.inline makes sure the loop never waits for the database), answering all
that one read brought in one write. A decision that needs the database (the Django
ORM, synchronous) runs in a few worker threads fed by one queue; a slow decision
holds one worker, not the next event.
Answers come back through a deque and at most one loop wake-up per batch, so a
burst does not pay a thread hop per event. Each worker owns its route table
(`routing.service.get_route_table()`, made once) and its database connection.

The deadline: every event is answered within `BridgeConfig.deadline` (settings.
ROUTING_DECISION_DEADLINE_MS) of its arrival, even when every worker is blocked
on a database that hangs. The loop keeps the events in arrival order and a timer
on the oldest unanswered one; when it fires, the loop answers that event itself
(503, without a decision) and marks it answered. A worker's answer for an event
already answered is dropped, and a worker skips an event answered while it was
queued: exactly one answer per event, whoever gives it.

The wire format is not here: `kamailio.evapi` parses each event and encodes each
answer without I/O, `kamailio.rtjson` provides the failure answers (the same as
over HTTP); `answer_event()` is the one step between them that decides.

Answers by nosip (`BridgeConfig.nosip`, evapi_bridge.nosip): each answer goes as a UDP
datagram to its Kamailio's SIP port instead, so that the SIP workers resume the calls,
not Kamailio's one EVAPI dispatcher; an answer too large for a datagram, or one the
kernel refuses, goes over EVAPI as without nosip. Either way one answer per event.

Outcome events (`"event": "sip-outcome"`, kamailio.events) are not routing events:
the loop parses them as they arrive and counts them in the process's outcome
aggregator (outcomes.ingest), which writes to the database from its own thread.
They never enter the workers' queue, take no answer and hold no decision back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import close_old_connections, connections

from evapi_bridge.netstring import FrameError, NetstringDecoder, encode
from evapi_bridge.nosip import DEFAULT_MAX_BYTES, NosipSender
from evapi_bridge.stats import PeriodStats
from kamailio import evapi
from kamailio import events as outcome_events
from kamailio.rtjson import Failure, failure_decision, failure_of
from outcomes import ingest
from routing.inline import NeedsDatabase, memory_only
from routing.metrics import BRIDGE_CONNECTED, BRIDGE_IN_FLIGHT, observe_decision
from routing.resolver import RouteTable
from routing.service import decide, get_route_table, warm_up

logger = logging.getLogger(__name__)

# Linux's quick-ACK option (see EvapiConnection._ack_now); None elsewhere.
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

# How long a connection attempt may take (a blackholed host would otherwise hang
# for the kernel's SYN retries, about two minutes).
CONNECT_TIMEOUT = 5.0

# The loop answers an expired event this long before its deadline, so that the answer
# is written by the deadline even when the loop wakes up a little late.
EXPIRY_MARGIN = 0.02

# How often a worker lets Django check its connection (close it past CONN_MAX_AGE,
# health-check it). Checking per event would cost a `SELECT 1` round trip per call.
DB_HYGIENE_SECONDS = 1.0


# A payload naming the routing event is answered as one, even if it mentions outcomes.
ROUTING_EVENT_BYTES = f'"{evapi.ROUTING_EVENT}"'.encode()


@dataclass(frozen=True)
class BridgeConfig:
    addresses: tuple[tuple[str, int], ...]
    default_tenant: str | None = None
    workers: int = 4
    stats_interval: float = 60.0
    max_frame: int = 65536
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    # At shutdown, how long to wait for decisions already taken before closing anyway.
    drain_timeout: float = 10.0
    # An event that waited longer than this for a worker gets 503 without a decision:
    # under overload, answering stale events fast lets the backlog drain instead of
    # deciding calls whose transaction timer is about to fire.
    max_wait: float = 5.0
    # Seconds from an event's arrival to its answer, at the latest (see the module doc).
    deadline: float = 0.3
    # Seconds to wait at start-up for the compiled table (rates, blocklists) to load
    # before connecting to Kamailio; past it, the bridge connects and the database
    # answers until they are loaded.
    warm_up: float = 5.0
    # Freeze the garbage collector's view of what was loaded (routing.service.warm_up):
    # for a bridge process of its own, not for one inside a test.
    freeze_gc: bool = False
    # Answers by nosip: Kamailio's SIP UDP address for each of `addresses` (same order),
    # or () to answer everything over EVAPI. Answers over `nosip_max_bytes` go by EVAPI.
    nosip: tuple[tuple[str, int], ...] = ()
    nosip_max_bytes: int = DEFAULT_MAX_BYTES
    # Sent in "xtra"."key" with each nosip answer; Kamailio's NOSIP_KEY must match.
    nosip_key: str = ""

    def __post_init__(self) -> None:
        if self.nosip and len(self.nosip) != len(self.addresses):
            raise ValueError(
                f"{len(self.nosip)} nosip addresses for {len(self.addresses)} evapi "
                "addresses: give one per evapi address, in the same order"
            )


def address_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Kind(enum.StrEnum):
    ANSWERED = "answered"  # a routing event; `answer` is set
    IGNORED = "ignored"  # not a routing event: nothing to answer
    UNANSWERABLE = "unanswerable"  # cannot tell which transaction: nothing can be sent


@dataclass(slots=True, eq=False)
class Ticket:
    """One event from its arrival to its one answer (`answered` is written by the loop only)."""

    connection: EvapiConnection
    payload: bytes
    received: float  # time.perf_counter()
    answered: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one event, for the loop to send, count and log."""

    kind: Kind
    answer: bytes | None = None  # the answer's JSON payload (not yet framed)
    tindex: int | None = None
    tlabel: int | None = None
    outcome: str = ""
    code: int = 0
    reason: str = ""
    caller: str = ""
    callee: str = ""
    error: str = ""  # why the event could not be routed or answered
    failure: Failure | None = None  # answered with this failure instead of a decision

    @property
    def engine_failed(self) -> bool:
        """The resolver or the database failed (not the event, not the load)."""
        return self.failure is not None and self.failure.engine_failed


def answer_event(
    payload: bytes,
    *,
    table: RouteTable | None,
    default_tenant: str | None,
    overloaded: bool = False,
    failure: Failure | None = None,
    detail: str = "",
) -> Result:
    """Parse one event, decide it, encode the answer. Never raises on engine failures.

    `overloaded` answers 503 without deciding: the event waited so long that
    deciding it would only make the backlog longer. `failure` answers that
    failure without deciding (`detail` is the error logged with it).
    """
    if overloaded:
        failure, detail = Failure.OVERLOADED, "shed: waited too long"
    event = evapi.parse_event(payload, default_tenant=default_tenant)
    if isinstance(event, evapi.Ignored):
        return Result(Kind.IGNORED, error=event.error)
    if isinstance(event, evapi.Unanswerable):
        return Result(Kind.UNANSWERABLE, error=event.error)
    caller = callee = ""
    if isinstance(event, evapi.Invalid):
        decision, error, failure = event.decision, event.error, None
    elif failure is not None:
        error = detail or failure.reason
        decision = failure_decision(failure, error)
    else:
        assert table is not None, "a decision needs a route table"
        try:
            decision, error = decide(event.request, table=table, transport="evapi"), ""
        except NeedsDatabase:
            raise  # decided inline, from memory only: the caller decides it in a worker
        except Exception as exc:
            failure = failure_of(exc)
            if failure is Failure.DATABASE_UNAVAILABLE:
                error = f"database error: {exc}".strip()
            else:
                logger.exception(
                    "routing engine failed on tindex=%s tlabel=%s", event.tindex, event.tlabel
                )
                error = repr(exc)
            decision = failure_decision(failure, error)
        caller = decision.caller or event.request.caller
        callee = decision.callee or event.request.callee
    answer = evapi.encode_answer(decision, tindex=event.tindex, tlabel=event.tlabel)
    if answer.failure is not None:
        logger.error("tindex=%s tlabel=%s: %s", event.tindex, event.tlabel, answer.error)
        failure, error = answer.failure, answer.error
    return Result(
        Kind.ANSWERED,
        answer=answer.payload,
        tindex=event.tindex,
        tlabel=event.tlabel,
        outcome=str(answer.decision.outcome),
        code=answer.decision.code,
        reason=answer.decision.reason,
        caller=caller,
        callee=callee,
        error=error,
        failure=failure,
    )


class EvapiConnection(asyncio.Protocol):
    """One TCP connection to Kamailio: frames in, answers out."""

    def __init__(self, bridge: Bridge, label: str, nosip: NosipSender | None = None) -> None:
        self.bridge = bridge
        self.label = label
        self.nosip = nosip  # answers go by datagram first (evapi_bridge.nosip)
        self.decoder = NetstringDecoder(bridge.config.max_frame)
        self.transport: asyncio.Transport | None = None
        self.socket = None  # for TCP options (Linux only: TCP_QUICKACK)
        self.in_flight = 0
        self.closing = False  # no more events taken; close once in-flight answers are out
        self.dropped = 0  # answers that found the connection gone
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and TCP_QUICKACK is not None:
            self.socket = sock
            # Our answers are single small writes: never held back by Nagle.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            logger.error("%s: %s; resetting the connection", self.label, exc)
            self._take(exc.frames)
            self.close_when_drained(f"framing error: {exc}")
            return
        self._take(frames)

    def _take(self, frames: list[bytes]) -> None:
        bridge = self.bridge
        answers: list[bytes] = []  # payloads, not yet framed
        for payload in frames:
            if outcome_events.is_outcome(payload) and bridge.take_outcome(payload):
                continue  # counted; nothing to answer
            answer = bridge.answer_inline(self, payload)
            if answer is None:  # the decision needs the database: a worker decides it
                self.in_flight += 1
                bridge.submit(self, payload)
            elif answer:
                answers.append(answer)
        # One write for everything this read brought; it carries the ACK. Answers all
        # sent by nosip write nothing here: then ACK at once.
        if not (answers and bridge.sent(self, answers)):
            self._ack_now()

    def _ack_now(self) -> None:
        """ACK what was read at once, though nothing is written back yet.

        Outcome events get no answer, and a decision made in a worker answers later,
        so no data carries the ACK of that segment: a delayed ACK (up to 40 ms) would
        hold Kamailio's next event behind Nagle's algorithm (its evapi socket does
        not set TCP_NODELAY). Linux leaves quick-ACK mode by itself, hence per read.
        """
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if not self.closed.done():
            self.closed.set_result(str(exc) if exc else "closed by peer")

    def send(self, data: bytes) -> bool:
        # Never pause reading because writes are buffered: Kamailio's dispatcher
        # blocks writing events to us and only then reads our answers.
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(data)
        return True

    def answered(self, count: int) -> None:
        self.in_flight -= count
        if self.closing and self.in_flight == 0 and self.transport is not None:
            self.transport.close()  # flushes what is buffered first

    def close_when_drained(self, reason: str) -> None:
        """Stop reading; close once every event already taken has been answered."""
        if self.transport is None or self.closing:
            return
        self.closing = True
        self.transport.pause_reading()
        if self.in_flight == 0:
            self.transport.close()
        else:
            # A decision stuck on a dead database must not keep the socket forever.
            asyncio.get_running_loop().call_later(
                self.bridge.config.drain_timeout, self.transport.abort
            )
        logger.debug("%s: closing (%s), %d answers pending", self.label, reason, self.in_flight)


class KamailioLink:
    """Keeps one address connected: connect, wait for loss, back off, reconnect."""

    def __init__(
        self, bridge: Bridge, host: str, port: int, nosip: NosipSender | None = None
    ) -> None:
        self.bridge = bridge
        self.host, self.port = host, port
        self.label = address_label(host, port)
        self.nosip = nosip
        self.connection: EvapiConnection | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.bridge.config
        delay = config.backoff_initial
        retrying = False
        gauge = BRIDGE_CONNECTED.labels(address=self.label)
        gauge.set(0)
        while not self.bridge.stopping:
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: EvapiConnection(self.bridge, self.label, self.nosip),
                        self.host,
                        self.port,
                    ),
                    CONNECT_TIMEOUT,
                )
            except OSError as exc:
                if not retrying:
                    logger.warning(
                        "cannot connect to %s (%s); retrying every %.1f s up to %.0f s, "
                        "logging again when connected",
                        self.label,
                        exc.strerror or str(exc) or type(exc).__name__,
                        delay,
                        config.backoff_max,
                    )
                    retrying = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, config.backoff_max)
                continue
            self.connection = connection
            gauge.set(1)
            logger.info("connected to %s", self.label)
            connected_at = time.monotonic()
            retrying = False
            reason = await connection.closed
            gauge.set(0)
            self.connection = None
            if self.bridge.stopping:
                logger.info("disconnected from %s", self.label)
                return
            logger.warning("disconnected from %s (%s); reconnecting", self.label, reason)
            # A Kamailio that accepts and at once closes (max_clients, a source filter)
            # must not get a reconnection storm: back off unless the link was stable.
            if time.monotonic() - connected_at >= config.backoff_max:
                delay = config.backoff_initial
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.backoff_max)

    def stop(self) -> None:
        """Take no more events: close when answered, or stop trying to connect."""
        if self.connection is not None:
            self.connection.close_when_drained("shutting down")
        elif self.task is not None:
            self.task.cancel()


class Bridge:
    """The whole bridge: links, worker threads, answers, statistics, shutdown."""

    def __init__(
        self, config: BridgeConfig, table_factory: Callable[[], RouteTable] = get_route_table
    ) -> None:
        self.config = config
        self.table_factory = table_factory
        self.stopping = False
        self.stats = PeriodStats()
        self.totals = PeriodStats()
        self.in_flight = 0
        self.late = 0  # worker answers dropped: the loop had answered at the deadline
        self._queue: queue.SimpleQueue[Ticket | None] = queue.SimpleQueue()
        self._outbox: collections.deque[tuple[Ticket, Result]] = collections.deque()
        # Events not yet known answered, in arrival order (loop thread only).
        self._pending: collections.deque[Ticket] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
        # When each worker started its current decision (0.0: idle).
        self._deciding = [0.0] * config.workers
        self._wakeup_pending = False
        self._stop_early = False
        self._engine_failing = False
        self._overloaded = False
        self._last_unanswerable_warning = 0.0
        self._nosip_fallback_logged = False
        self._started = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self.links: list[KamailioLink] = []
        self.outcomes: ingest.Aggregator | None = None  # the process's, on the first event
        # The route table decisions made in the loop use (answer_inline); None until run().
        self._inline_table: RouteTable | None = None
        self._inline_ready: Callable[[], bool] | None = None

    # --- lifecycle (event loop thread) ---------------------------------------------

    async def run(self) -> None:
        """Run until stop() is called; then drain, close and return."""
        self._stop_requested = asyncio.Event()
        self._drained = asyncio.Event()
        self._started = time.monotonic()
        self._loop = asyncio.get_running_loop()
        if self._stop_early:
            self._stop_requested.set()
        threads = [
            threading.Thread(target=self._work, args=(n,), name=f"evapi-worker-{n}", daemon=True)
            for n in range(self.config.workers)
        ]
        for thread in threads:
            thread.start()
        # Load the compiled table (rates, blocklists) before connecting: with several
        # bridges, Kamailio sends calls to every connected one, and a cold one would
        # send each to the database.
        loading = await asyncio.to_thread(
            warm_up, self.config.warm_up, freeze=self.config.freeze_gc
        )
        if loading:
            logger.warning(
                "%s not loaded after %.0f s; the database answers until it is",
                ", ".join(loading),
                self.config.warm_up,
            )
        self._inline_table = self.table_factory()
        # Only a table that says it is loaded (the compiled one) can decide from memory.
        self._inline_ready = getattr(self._inline_table, "ready", None)
        self.links = [
            KamailioLink(self, host, port, self._nosip_sender(n))
            for n, (host, port) in enumerate(self.config.addresses)
        ]
        for link in self.links:
            link.task = asyncio.create_task(link.run(), name=f"evapi-link-{link.label}")
        reporter = asyncio.create_task(self._report_periodically())
        try:
            await self._stop_requested.wait()
        finally:
            await self._shutdown(threads)
            reporter.cancel()

    def _nosip_sender(self, number: int) -> NosipSender | None:
        if not self.config.nosip:
            return None
        host, port = self.config.nosip[number]
        sender = NosipSender(
            host, port, max_bytes=self.config.nosip_max_bytes, key=self.config.nosip_key
        )
        logger.info(
            "answers to %s go by nosip to %s (up to %d bytes; larger ones by EVAPI)",
            address_label(*self.config.addresses[number]),
            address_label(host, port),
            sender.max_bytes,
        )
        return sender

    def stop(self) -> None:
        """Ask the bridge to stop; safe from a signal handler and from any thread."""
        self._stop_early = True  # in case run() has not started its loop yet
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)

    async def _shutdown(self, threads: list[threading.Thread]) -> None:
        self.stopping = True
        for link in self.links:
            link.stop()
        if self.in_flight:
            logger.info("stopping: answering %d events in flight", self.in_flight)
            try:
                await asyncio.wait_for(self._drained.wait(), self.config.drain_timeout)
            except TimeoutError:
                logger.warning("stopping with %d events unanswered", self.in_flight)
        tasks = [link.task for link in self.links if link.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.drain_timeout)
            for link in self.links:  # Kamailio is not reading what we still owe it
                if link.task in pending and link.connection and link.connection.transport:
                    link.connection.transport.abort()
            for task in pending:
                task.cancel()
        for _ in threads:
            self._queue.put(None)
        await asyncio.to_thread(_join_all, threads, 5.0)
        if self.outcomes is not None:
            try:
                await asyncio.to_thread(_flush_and_close, self.outcomes)
            except Exception:
                logger.exception("stopping: outcome events not written")
        for link in self.links:
            if link.nosip is not None:
                link.nosip.close()
        summary = self.totals.summary(time.monotonic() - self._started)
        logger.info("stopped; since start-up (%s)", summary.removeprefix("last "))

    async def _report_periodically(self) -> None:
        if self.config.stats_interval <= 0:
            return
        period_start = time.monotonic()
        while True:
            await asyncio.sleep(self.config.stats_interval)
            now = time.monotonic()
            connected = sum(link.connection is not None for link in self.links)
            logger.info(
                "%s; %d/%d connected, %d in flight",
                self.stats.summary(now - period_start),
                connected,
                len(self.links),
                self.in_flight,
            )
            self.stats, period_start = PeriodStats(), now
            self._nosip_fallback_logged = False

    # --- events in (loop thread) -----------------------------------------------------

    def answer_inline(self, connection: EvapiConnection, payload: bytes) -> bytes | None:
        """Decide an event here, in the loop, if its decision needs only memory.

        Returns the answer's payload (b"" when the event takes none), or None when the
        decision needs the database (routing.inline): the loop must never wait for
        it, so a worker thread decides that event, under the deadline.
        """
        table, ready = self._inline_table, self._inline_ready
        if ready is None or not ready():
            return None  # not loaded yet (or a database table): decisions need the database
        received = time.perf_counter()
        try:
            with memory_only():
                result = answer_event(
                    payload, table=table, default_tenant=self.config.default_tenant
                )
        except NeedsDatabase:
            return None
        except Exception as exc:  # a bug must not stop the loop, nor cost the event
            logger.exception("%s: inline decision failed (%r)", connection.label, exc)
            return None
        seconds = time.perf_counter() - received
        if result.kind is Kind.ANSWERED:
            observe_decision("evapi", result.outcome, seconds)
        self._note(connection, result, seconds)
        for stats in (self.stats, self.totals):
            stats.events += 1
            _count(stats, result, seconds)
        return result.answer if result.answer is not None else b""

    def sent(self, connection: EvapiConnection, payloads: list[bytes]) -> bool:
        """Send answers: each by nosip if it can go that way, the rest in one EVAPI write.

        Answers that find the EVAPI connection gone are counted as dropped (those sent
        by nosip still reach Kamailio, which may still hold the transaction). True when
        something was written to the EVAPI connection.
        """
        nosip = connection.nosip
        frames: list[bytes] = []
        if nosip is None:
            frames = [encode(payload) for payload in payloads]
        else:
            for payload in payloads:
                if not nosip.send(payload):
                    frames.append(encode(payload))
            self._count_channels(connection, len(payloads) - len(frames), len(frames))
        if not frames:
            return False
        if not connection.send(b"".join(frames)):
            self._dropped(connection, len(frames))
            return False
        return True

    def _count_channels(self, connection: EvapiConnection, by_nosip: int, by_evapi: int) -> None:
        for stats in (self.stats, self.totals):
            stats.nosip += by_nosip
            stats.nosip_fallbacks += by_evapi
        if by_evapi and not self._nosip_fallback_logged:
            # Once per period: answers too large for a datagram are normal, and a full
            # send buffer comes in bursts; the summary line counts them all.
            self._nosip_fallback_logged = True
            logger.warning(
                "%s: answers sent by EVAPI instead of nosip (%s); counted in the summary",
                connection.label,
                connection.nosip.last_error if connection.nosip else "",
            )

    def _dropped(self, connection: EvapiConnection, count: int) -> None:
        if not connection.dropped:  # once per connection: the summary counts them
            logger.warning(
                "%s: connection gone, answers to its events are dropped", connection.label
            )
        connection.dropped += count
        for stats in (self.stats, self.totals):
            stats.dropped += count
            stats.answers -= count

    def submit(self, connection: EvapiConnection, payload: bytes) -> None:
        self.in_flight += 1
        self.stats.events += 1
        self.totals.events += 1
        BRIDGE_IN_FLIGHT.inc()
        ticket = Ticket(connection, payload, time.perf_counter())
        self._pending.append(ticket)
        if self._expiry is None:
            self._schedule_expiry(ticket)
        self._queue.put(ticket)

    def take_outcome(self, payload: bytes) -> bool:
        """Count an outcome event (loop thread); False if it is not one after all."""
        try:
            event = outcome_events.parse_event(payload)
            if isinstance(event, outcome_events.NotOutcome) or (
                isinstance(event, outcome_events.Malformed) and ROUTING_EVENT_BYTES in payload
            ):
                return False  # a routing event (perhaps broken) that merely mentions the name
            if self.outcomes is None:
                self.outcomes = ingest.shared()
            if isinstance(event, outcome_events.Malformed):
                self.outcomes.refuse("malformed")
            else:
                self.outcomes.add(event)
        except Exception:  # a bug must not stop the loop, nor cost a routing event
            logger.exception("outcome event lost to a bug in the bridge")
        return True

    # --- the deadline (loop thread) ----------------------------------------------------

    def _schedule_expiry(self, oldest: Ticket) -> None:
        due = oldest.received + self.config.deadline - EXPIRY_MARGIN - time.perf_counter()
        self._expiry = self._loop.call_later(max(due, 0.0), self._expire)

    def _expire(self) -> None:
        """Answer, without a decision, every event whose deadline has come."""
        self._expiry = None
        now = time.perf_counter()
        limit = self.config.deadline - EXPIRY_MARGIN
        expired: list[Ticket] = []
        pending = self._pending
        while pending:
            ticket = pending[0]
            if not ticket.answered:
                if now - ticket.received < limit:
                    break
                expired.append(ticket)
            pending.popleft()
        if expired:
            # A worker deciding for over half the deadline is stuck, in practice on
            # the database (a decision from memory takes about a millisecond), and
            # decisions failing on the database say the same: the events are answered
            # "database unavailable". Otherwise every worker is busy deciding and
            # events wait: overload.
            since = now - self.config.deadline / 2
            stuck = self._engine_failing or any(0.0 < started < since for started in self._deciding)
            items = [(ticket, self._expired_result(ticket, now, stuck)) for ticket in expired]
            self._deliver(items, now)
        if pending:
            self._schedule_expiry(pending[0])

    def _expired_result(self, ticket: Ticket, now: float, stuck: bool) -> Result:
        waited = (now - ticket.received) * 1000
        if stuck:
            failure = Failure.DATABASE_UNAVAILABLE
            detail = f"no decision within {waited:.0f} ms: the database does not answer"
        else:
            failure = Failure.OVERLOADED
            detail = f"shed: no worker free within {waited:.0f} ms"
        try:
            result = answer_event(
                ticket.payload,
                table=None,
                default_tenant=self.config.default_tenant,
                failure=failure,
                detail=detail,
            )
        except Exception as exc:  # a bug must not stop the loop
            logger.exception("%s: event lost to a bug in the bridge", ticket.connection.label)
            return Result(Kind.UNANSWERABLE, error=repr(exc))
        if result.kind is Kind.ANSWERED:
            observe_decision("evapi", result.outcome, now - ticket.received)
        self._note(ticket.connection, result, now - ticket.received)
        return result

    # --- decisions (worker threads) --------------------------------------------------

    def _work(self, number: int = 0) -> None:
        table = self.table_factory()
        last_hygiene = 0.0
        try:
            while (ticket := self._queue.get()) is not None:
                if ticket.answered:
                    continue  # the loop answered it at its deadline: nothing left to do
                started = time.perf_counter()
                self._deciding[number] = started
                if started - last_hygiene > DB_HYGIENE_SECONDS:
                    last_hygiene = started
                    try:
                        close_old_connections()
                    except Exception:  # a dead server can fail even the close
                        _close_connections()
                overloaded = started - ticket.received > self.config.max_wait
                result = self._decide(ticket.connection, ticket.payload, table, started, overloaded)
                self._deciding[number] = 0.0
                if result.engine_failed:
                    _close_connections()  # the next event reconnects
                self._post((ticket, result))
        finally:
            _close_connections()

    def _decide(
        self,
        connection: EvapiConnection,
        payload: bytes,
        table: RouteTable,
        started: float,
        overloaded: bool,
    ) -> Result:
        """answer_event() plus metrics and logs; never raises, or the worker would die."""
        try:
            result = answer_event(
                payload,
                table=table,
                default_tenant=self.config.default_tenant,
                overloaded=overloaded,
            )
            seconds = time.perf_counter() - started
            if result.kind is Kind.ANSWERED:
                observe_decision("evapi", result.outcome, seconds)
            self._note(connection, result, seconds)
        except Exception as exc:
            logger.exception("%s: event lost to a bug in the bridge", connection.label)
            return Result(Kind.UNANSWERABLE, error=repr(exc))
        return result

    def _note(self, connection: EvapiConnection, result: Result, seconds: float) -> None:
        """Log one event's fate; engine failures and overload once per period."""
        if result.failure is Failure.OVERLOADED:
            if not self._overloaded:
                self._overloaded = True
                logger.error(
                    "overloaded: events waited over %.1f s for a worker; answering 503 "
                    "without deciding until the backlog is gone",
                    min(self.config.max_wait, self.config.deadline),
                )
            return
        if self._overloaded and result.kind is Kind.ANSWERED:
            self._overloaded = False
            logger.info("no longer overloaded")
        if result.engine_failed:
            if not self._engine_failing:
                self._engine_failing = True
                logger.error(
                    "routing engine failing (%s): answering %d until it recovers",
                    result.error,
                    result.code,
                )
        elif result.kind is Kind.ANSWERED and self._engine_failing:
            self._engine_failing = False
            logger.info("routing engine recovered")
        if result.kind is Kind.UNANSWERABLE:
            # At most one warning a second: a misbehaving config can send thousands;
            # the periodic summary counts them all.
            now = time.monotonic()
            quiet = now - self._last_unanswerable_warning < 1.0
            if not quiet:
                self._last_unanswerable_warning = now
            logger.log(
                logging.DEBUG if quiet else logging.WARNING,
                "%s: event not answered: %s",
                connection.label,
                result.error,
            )
        elif result.kind is Kind.IGNORED:
            logger.debug("%s: %s", connection.label, result.error)
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s: tindex=%s tlabel=%s caller=%r callee=%r %s %s %s (%.2f ms)%s",
                connection.label,
                result.tindex,
                result.tlabel,
                result.caller,
                result.callee,
                result.outcome,
                result.code,
                result.reason,
                seconds * 1000,
                f": {result.error}" if result.error else "",
            )

    def _post(self, item: tuple[Ticket, Result]) -> None:
        self._outbox.append(item)
        if not self._wakeup_pending:
            self._wakeup_pending = True
            # The loop is closed only if a decision outlived the shutdown's wait.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._flush)

    # --- answers out (loop thread) ---------------------------------------------------

    def _flush(self) -> None:
        # Cleared before draining: a worker that appends after this schedules a new flush.
        self._wakeup_pending = False
        items: list[tuple[Ticket, Result]] = []
        while self._outbox:
            ticket, result = self._outbox.popleft()
            if ticket.answered:
                self.late += 1  # answered at the deadline: one answer per event
                logger.debug("%s: dropped a decision that came too late", ticket.connection.label)
            else:
                items.append((ticket, result))
        self._deliver(items, time.perf_counter())

    def _deliver(self, items: list[tuple[Ticket, Result]], now: float) -> None:
        """Send each event's one answer, batched per connection; count; note drained."""
        batches: dict[EvapiConnection, list[bytes]] = {}  # answer payloads
        done: dict[EvapiConnection, int] = {}
        for ticket, result in items:
            ticket.answered = True
            connection = ticket.connection
            done[connection] = done.get(connection, 0) + 1
            if result.answer is not None:
                batches.setdefault(connection, []).append(result.answer)
            for stats in (self.stats, self.totals):
                _count(stats, result, now - ticket.received)
        for connection, payloads in batches.items():
            self.sent(connection, payloads)
        for connection, count in done.items():
            self.in_flight -= count
            BRIDGE_IN_FLIGHT.dec(count)
            connection.answered(count)
        if self.in_flight == 0 and self.stopping:
            self._drained.set()


def _count(stats: PeriodStats, result: Result, latency: float) -> None:
    if result.kind is Kind.ANSWERED:
        stats.answers += 1
        stats.latency.add(latency)
        if result.code >= 500 and result.error:
            stats.errors += 1
        elif result.error:
            stats.invalid += 1
    elif result.kind is Kind.IGNORED:
        stats.ignored += 1
    else:
        stats.unanswerable += 1


def _close_connections() -> None:
    """Close this thread's database connections, ignoring errors of a dead server."""
    for connection in connections.all(initialized_only=True):
        # A dead server makes close() fail; the socket is released anyway.
        with contextlib.suppress(Exception):
            connection.close()


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _flush_and_close(outcomes: ingest.Aggregator) -> None:
    try:
        outcomes.flush()
    finally:
        connections.close_all()  # this thread's connections
