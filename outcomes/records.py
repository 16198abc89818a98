"""Outcome events as the engine reads them, whatever the transport (no Django, no I/O).

`kamailio.events` parses the wire format into these; `outcomes.ingest` aggregates them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Post-dial delay histogram: upper bounds in milliseconds (the last bucket is open).
# Fixed bounds make buckets of different minutes and processes mergeable by addition.
PDD_BOUNDS_MS: tuple[int, ...] = (100, 250, 500, 1000, 2000, 3000, 5000, 8000, 13000, 20000)
PDD_OVER = 0  # the value of the open bucket (above the last bound)


def pdd_bucket(pdd_ms: int) -> int:
    """The histogram bucket of a post-dial delay: its upper bound, or PDD_OVER."""
    for bound in PDD_BOUNDS_MS:
        if pdd_ms <= bound:
            return bound
    return PDD_OVER


@dataclass(frozen=True, slots=True)
class Attribution:
    """What an event says about the decision it reports on (echoed from the rtjson answer)."""

    decision_id: str
    tenant: str  # the tenant's slug
    route: int  # the index of the route in the answer's `routes`
    trunk_id: int | None = None
    trunk: str = ""
    carrier: str = ""
    prefix: str = ""
    customer: str = ""
    call_id: str = ""
    at: float | None = None  # Unix time of the event at Kamailio; None: when received


@dataclass(frozen=True, slots=True)
class Attempt:
    """One branch attempt: the final SIP code, delays to first provisional and to answer."""

    of: Attribution
    code: int
    pdd_ms: int | None = None
    answer_ms: int | None = None

    @property
    def answered(self) -> bool:
        return 200 <= self.code < 300

    @property
    def kind(self) -> str:
        return "attempt"


@dataclass(frozen=True, slots=True)
class CallEnd:
    """The end of an answered call, with its duration."""

    of: Attribution
    duration_s: float

    @property
    def kind(self) -> str:
        return "end"


OutcomeEvent = Attempt | CallEnd
