"""The decision log: a sample of the decisions the engine made for Kamailio.

`record()` is on the call path (routing.service.decide calls it for the transports'
decisions): it picks ROUTING_DECISION_SAMPLE_PERCENT of decisions by a hash of their
id, so every process samples the same ids, and appends the chosen ones to a bounded
in-memory queue; it never touches the database. A thread per process writes the queue
in batches every FLUSH_SECONDS and, about hourly, forgets samples older than
ROUTING_DECISION_RETENTION_HOURS. When the database does not answer, the queue keeps
the latest QUEUE_LIMIT samples and the oldest are dropped (counted, logged once a
minute at most): a routing decision never waits for its sample.

The samples serve the impact preview of a publish (versions.impact replays them)
and the decision lookup by the id Kamailio logs (`decision_id`).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import datetime as dt
import logging
import threading
import time
import zlib

from django.conf import settings
from django.db import close_old_connections, connections

from routing.process_local import ProcessLocal, threads_allowed
from routing.resolver import CallRequest, Decision
from versions.models import DecisionSample

logger = logging.getLogger("routing.decisions")

FLUSH_SECONDS = 1.0
QUEUE_LIMIT = 20_000
PRUNE_EVERY_S = 3600
_SCALE = 1_000_000  # sampling resolution: a millionth


def sampled(decision_id: str, percent: float) -> bool:
    """Whether a decision is in the sample: the same answer in every process."""
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    return zlib.crc32(decision_id.encode()) % _SCALE < percent * (_SCALE // 100)


def request_fields(request: CallRequest) -> dict:
    """The request as JSON (what a replay needs to ask the same question again)."""
    fields = {k: v for k, v in dataclasses.asdict(request).items() if v not in (None, "")}
    if request.at is not None:
        fields["at"] = request.at.isoformat()
    return fields


def request_from(fields: dict) -> CallRequest:
    """The CallRequest a sample recorded (unknown keys ignored: older samples)."""
    known = {f.name for f in dataclasses.fields(CallRequest)}
    values = {k: v for k, v in fields.items() if k in known}
    if isinstance(values.get("at"), str):
        values["at"] = dt.datetime.fromisoformat(values["at"])
    return CallRequest(**values)


def sample_of(
    at: float, request: CallRequest, decision: Decision, transport: str
) -> DecisionSample:
    first = decision.routes[0] if decision.routes else None
    return DecisionSample(
        decision_id=decision.decision_id,
        decided_at=dt.datetime.fromtimestamp(at, tz=dt.UTC),
        tenant_id=decision.tenant.id if decision.tenant else None,
        plan_id=decision.plan_id,
        plan_version=decision.plan_version,
        transport=transport,
        request=request_fields(request),
        outcome=str(decision.outcome),
        code=decision.code,
        reason=decision.reason[:100],
        first_trunk_id=first.trunk_id if first else None,
        trunks=[route.trunk for route in decision.routes],
        trace=list(decision.trace),
    )


class DecisionLog:
    """One process's sample queue and its writer thread (started on the first sample)."""

    def __init__(self, *, percent: float, retention_hours: int, background: bool = True) -> None:
        self.percent = percent
        self.background = background  # False: flush() is called by hand (tests)
        self.retention_hours = retention_hours
        self._queue: collections.deque = collections.deque(maxlen=QUEUE_LIMIT)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_prune = 0.0
        self._last_drop_log = 0.0
        self.dropped = 0
        self.written = 0

    def record(self, request: CallRequest, decision: Decision, transport: str) -> None:
        if not sampled(decision.decision_id, self.percent):
            return
        if len(self._queue) == QUEUE_LIMIT:
            self.dropped += 1
        self._queue.append((time.time(), request, decision, transport))
        if self._thread is None and self.background:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def flush(self) -> int:
        """Write what is queued; returns how many samples were written."""
        batch = []
        while self._queue:
            try:
                batch.append(self._queue.popleft())
            except IndexError:
                break
        if not batch:
            return 0
        try:
            DecisionSample.objects.bulk_create(
                [sample_of(*item) for item in batch], batch_size=500, ignore_conflicts=True
            )
        except Exception:
            # Put them back (the newest, as many as fit) for the next flush.
            room = QUEUE_LIMIT - len(self._queue)
            self._queue.extendleft(reversed(batch[-room:] if room > 0 else []))
            raise
        self.written += len(batch)
        return len(batch)

    def prune_if_due(self) -> int:
        now = time.time()
        if now - self._last_prune < PRUNE_EVERY_S:
            return 0
        self._last_prune = now
        return prune(hours=self.retention_hours)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stopping.wait(FLUSH_SECONDS):
                try:
                    close_old_connections()
                    if not self.flush():
                        # Idle: hold no connection (a bridge's workers count theirs).
                        connections.close_all()
                    self.prune_if_due()
                except Exception:
                    logger.exception("decision log: writing failed; retrying")
                if self.dropped and time.time() - self._last_drop_log > 60:
                    self._last_drop_log = time.time()
                    logger.warning("decision log: %d samples dropped (queue full)", self.dropped)
            try:
                self.flush()
            except Exception:
                logger.exception("decision log: last write failed; %d lost", len(self._queue))
        finally:
            connections.close_all()  # this thread's connections


def prune(*, hours: int) -> int:
    """Forget the samples older than `hours`; returns how many."""
    cutoff = dt.datetime.now(tz=dt.UTC) - dt.timedelta(hours=hours)
    deleted, _ = DecisionSample.objects.filter(decided_at__lt=cutoff).delete()
    return deleted


_logs: ProcessLocal[DecisionLog] = ProcessLocal(
    lambda using: DecisionLog(
        percent=settings.ROUTING_DECISION_SAMPLE_PERCENT,
        retention_hours=settings.ROUTING_DECISION_RETENTION_HOURS,
        background=threads_allowed(),
    )
)


def decision_log() -> DecisionLog:
    """This process's decision log (a forked worker gets its own, and its own thread)."""
    return _logs.get()


def forget_decision_log() -> None:
    """Stop and drop this process's log (tests switch databases and settings)."""
    for log in _logs.forget():
        log.stop()


def record(request: CallRequest, decision: Decision, transport: str) -> None:
    """settings.ROUTING_DECISION_LOG's default: sample this decision."""
    decision_log().record(request, decision, transport)
