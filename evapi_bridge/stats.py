"""Counters and latency percentiles for the bridge's periodic summary line.

Updated only from the event loop thread, so no locks. Latencies go into
logarithmic buckets (about 4% wide), so a period of millions of events costs a
few hundred integers and a percentile is read without sorting anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

_GROWTH = 1.04
_LOG_GROWTH = math.log(_GROWTH)
_FLOOR = 1e-6  # one microsecond: faster is reported as 1 µs


@dataclass
class LatencyHistogram:
    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0

    def add(self, seconds: float) -> None:
        index = int(math.log(max(seconds, _FLOOR) / _FLOOR) / _LOG_GROWTH)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1

    def percentile(self, fraction: float) -> float | None:
        """The latency (seconds) below which `fraction` of the samples fall, or None."""
        if not self.count:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return _FLOOR * _GROWTH ** (index + 1)  # upper edge: never under-reports
        raise AssertionError("unreachable: rank <= count")


@dataclass
class PeriodStats:
    """What happened since the last summary."""

    events: int = 0
    answers: int = 0
    errors: int = 0  # answers saying the engine failed (5xx)
    invalid: int = 0  # malformed routing events answered with a 4xx
    ignored: int = 0
    unanswerable: int = 0
    dropped: int = 0  # answers whose connection was gone
    nosip: int = 0  # answers sent as nosip datagrams (evapi_bridge.nosip)
    nosip_fallbacks: int = 0  # answers nosip could not take, sent by EVAPI instead
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def summary(self, seconds: float) -> str:
        p50, p99 = self.latency.percentile(0.50), self.latency.percentile(0.99)
        latency = (
            f"latency p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
            if p50 is not None and p99 is not None
            else "latency n/a"
        )
        return (
            f"last {seconds:.0f} s: {self.events} events, {self.answers} answers "
            f"({self.errors} engine errors, {self.invalid} malformed), {self.ignored} ignored, "
            f"{self.unanswerable} unanswerable, {self.dropped} dropped; {latency}"
            f"{self._channels()}"
        )

    def _channels(self) -> str:
        """With nosip on: how many answers went each way (the rest of the answers went
        by EVAPI because nosip was off for their connection)."""
        if not (self.nosip or self.nosip_fallbacks):
            return ""
        evapi = self.answers - self.nosip
        return (
            f"; answers by nosip {self.nosip}, by EVAPI {evapi} "
            f"({self.nosip_fallbacks} too large for nosip or refused)"
        )
