"""The per-process aggregator: outcome events in, per-minute deltas out to the database.

`add()` costs a dictionary update under a lock and never touches the database, so a
transport can call it on its hot path; `flush()` writes what accumulated (a background
thread calls it every settings.OUTCOMES_FLUSH_SECONDS, or sooner after FLUSH_EVENTS
events) and, about once an hour, prunes what is older than the retention.

Deduplication: an event is identified by (decision_id, route, kind); the same key seen
again within `window` seconds (and among the last `max_keys` keys) is a duplicate and
not counted. Each process dedupes what it receives: Kamailio sends an event once, over
one transport, to one engine, so a retry lands on the same process or is a rare double.

Refusals (malformed, duplicate, unknown tenant, trunk of another tenant, an end of an
attempt that failed, too old or in the future) are counted by reason and logged at
most once a second, as one line of counts.

Trunk health: each accepted attempt with a trunk id is also kept, per (tenant, trunk),
as (at, failed) in arrival order (the last HEALTH_KEEP per trunk), and a flush hands
them to routing.health after writing the buckets. A failed health update keeps them
for the next flush and never costs the buckets.
"""

from __future__ import annotations

import atexit
import collections
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections

from outcomes import store
from outcomes.metrics import count_events
from outcomes.records import Attempt, CallEnd, OutcomeEvent, pdd_bucket
from routing.health import is_failure

logger = logging.getLogger("routing.outcomes")

FLUSH_EVENTS = 5000
FUTURE_SLACK_S = 300  # an event up to 5 minutes ahead of our clock is clock skew
PRUNE_EVERY_S = 3600
HEALTH_KEEP = 1000  # outcomes kept per trunk between two flushes (the latest)

Outcomes = collections.deque[tuple[float, bool]]


class Aggregator:
    """Accumulates outcome events of one process; thread-safe."""

    def __init__(
        self,
        *,
        window: float = 600.0,
        max_keys: int = 200_000,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
        writer: Callable[[dict[store.Key, store.Delta]], store.Written] = store.write,
        observer: Callable[[dict[store.TrunkKey, Outcomes], float], object] = store.observe_health,
    ) -> None:
        self.window = window
        self.max_keys = max_keys
        self.retention_days = retention_days
        self.clock = clock
        self.writer = writer
        self.observer = observer
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._deltas: dict[store.Key, store.Delta] = {}
        self._pending_events = 0
        self._health: dict[store.TrunkKey, Outcomes] = {}
        self._last_health_log = 0.0
        # (decision_id, route, kind) -> (seen at, the attempt's code or 0)
        self._seen: collections.OrderedDict[tuple[str, int, str], tuple[float, int]] = (
            collections.OrderedDict()
        )
        self.accepted = 0
        self.written = 0
        self.refused: collections.Counter[str] = collections.Counter()
        self._unlogged: collections.Counter[str] = collections.Counter()
        self._last_log = 0.0
        self._last_prune = 0.0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- events in (any thread) ----------------------------------------------------

    def add(self, event: OutcomeEvent) -> str | None:
        """Count `event`; None when counted, else the reason it is not."""
        now = self.clock()
        of = event.of
        at = of.at if of.at is not None else now
        if at > now + FUTURE_SLACK_S:
            return self.refuse("event from the future")
        if at < now - self.retention_days * 86400:
            return self.refuse("event older than the retention")
        minute = int(at // 60) * 60
        seen_key = (of.decision_id, of.route, event.kind)
        with self._lock:
            self._forget(now)
            if seen_key in self._seen:
                reason = "duplicate"
            elif isinstance(event, CallEnd) and self._failed_attempt(of.decision_id, of.route):
                reason = "end of a failed attempt"
            else:
                reason = None
                code = event.code if isinstance(event, Attempt) else 0
                self._seen[seen_key] = (now, code)
                self._count(event, (of.tenant, minute, of.trunk_id or 0, of.prefix, of.customer))
                if code and of.trunk_id:
                    outcomes = self._health.get((of.tenant, of.trunk_id))
                    if outcomes is None:
                        outcomes = self._health[of.tenant, of.trunk_id] = collections.deque(
                            maxlen=HEALTH_KEEP
                        )
                    outcomes.append((at, is_failure(code)))
                self.accepted += 1
                self._pending_events += 1
                if self._pending_events >= FLUSH_EVENTS:
                    self._wake.set()
        if reason is not None:
            return self.refuse(reason)
        count_events("accepted")
        return None

    def refuse(self, reason: str, count: int = 1) -> str:
        """Count `count` events not taken for `reason` (transports call it for malformed)."""
        count_events(reason, count)
        with self._lock:
            self.refused[reason] += count
            self._unlogged[reason] += count
            now = self.clock()
            if now - self._last_log < 1.0:
                return reason
            self._last_log = now
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self._unlogged.items()))
            self._unlogged.clear()
        logger.warning("outcome events refused (since the last report): %s", summary)
        return reason

    def _forget(self, now: float) -> None:
        seen = self._seen
        while seen and (
            len(seen) >= self.max_keys or next(iter(seen.values()))[0] < now - self.window
        ):
            seen.popitem(last=False)

    def _failed_attempt(self, decision_id: str, route: int) -> bool:
        seen = self._seen.get((decision_id, route, "attempt"))
        return seen is not None and not 200 <= seen[1] < 300

    def _count(self, event: OutcomeEvent, key: store.Key) -> None:
        delta = self._deltas.get(key)
        if delta is None:
            delta = self._deltas[key] = store.Delta(
                trunk_name=event.of.trunk, carrier_name=event.of.carrier
            )
        if isinstance(event, CallEnd):
            delta.ended += 1
            delta.duration_s_sum += event.duration_s
            return
        delta.attempts += 1
        code = event.code
        if 200 <= code < 300:
            delta.answered += 1
        elif 400 <= code < 500:
            delta.failed_4xx += 1
        elif 500 <= code < 600:
            delta.failed_5xx += 1
        elif code >= 600:
            delta.failed_6xx += 1
        else:
            delta.failed_other += 1
        delta.codes[code] += 1
        if event.pdd_ms is not None:
            delta.pdd_count += 1
            delta.pdd_ms_sum += event.pdd_ms
            delta.pdd[pdd_bucket(event.pdd_ms)] += 1

    # --- out to the database ---------------------------------------------------------

    def flush(self) -> store.Written:
        """Write what accumulated, then update the trunks' health.

        On a database error writing the buckets, the deltas and the health outcomes are
        put back (and the error raised); a failed health update keeps its outcomes for
        the next flush, is logged at most once a second, and does not raise.
        """
        with self._flush_lock:
            with self._lock:
                deltas, self._deltas = self._deltas, {}
                health, self._health = self._health, {}
                self._pending_events = 0
            try:
                written = self.writer(deltas)
            except Exception:
                with self._lock:
                    for key, delta in deltas.items():
                        self._merge_back(key, delta)
                    self._health_back(health)
                raise
            self.written += written.events
            for reason, count in written.refused.items():
                self.refuse(reason, count)
            if health:
                self._observe(health)
            return written

    def _observe(self, health: dict[store.TrunkKey, Outcomes]) -> None:
        try:
            self.observer(health, self.clock())
        except Exception:
            with self._lock:
                self._health_back(health)
            now = self.clock()
            if now - self._last_health_log >= 1.0:
                self._last_health_log = now
                logger.exception("outcomes: trunk health update failed; retrying next flush")

    def _health_back(self, health: dict[store.TrunkKey, Outcomes]) -> None:
        """Put outcomes not applied back before those that came since (the latest kept)."""
        for key, older in health.items():
            newer = self._health.get(key)
            if newer is not None:
                older.extend(newer)  # a bounded deque: the oldest fall off
            self._health[key] = older

    def _merge_back(self, key: store.Key, delta: store.Delta) -> None:
        current = self._deltas.get(key)
        if current is None:
            self._deltas[key] = delta
            return
        for name in store.SUMMED:
            setattr(current, name, getattr(current, name) + getattr(delta, name))
        current.codes.update(delta.codes)
        current.pdd.update(delta.pdd)

    def prune_if_due(self) -> int:
        now = self.clock()
        if now - self._last_prune < PRUNE_EVERY_S:
            return 0
        self._last_prune = now
        return store.prune(now=dt.datetime.fromtimestamp(now, tz=dt.UTC), days=self.retention_days)

    # --- the background flusher ------------------------------------------------------

    def start(self, every: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(every,), name="outcomes-flusher", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)  # a worker's last second of events is not lost on exit

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, every: float) -> None:
        while not self._stopping:
            self._wake.wait(every)
            self._wake.clear()
            try:
                close_old_connections()
                self.flush()
                self.prune_if_due()
            except Exception:  # the database is down: keep counting, retry next time
                logger.exception("outcomes: flush failed; retrying in %.1f s", every)
        try:
            self.flush()
        except Exception:
            logger.exception("outcomes: last flush failed; %d events lost", self._pending_events)


_shared: Aggregator | None = None
_shared_lock = threading.Lock()


def shared() -> Aggregator:
    """This process's aggregator, its flusher started on first use (unless disabled)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                aggregator = Aggregator(retention_days=settings.OUTCOMES_RETENTION_DAYS)
                if settings.OUTCOMES_FLUSH_SECONDS > 0:
                    aggregator.start(settings.OUTCOMES_FLUSH_SECONDS)
                _shared = aggregator
    return _shared
