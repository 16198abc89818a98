"""The EVAPI message protocol: one event payload in, at most one answer payload out.

No sockets and no threads here: `handle_event()` parses Kamailio's JSON event,
asks the shared resolver (through `routing.service.decide`, with the route table
the caller owns) and builds the answer, the rtjson document plus
`"xtra": {"tindex": N, "tlabel": N}` so Kamailio can `t_continue` the suspended
transaction. Every routing event that names its transaction gets exactly one
answer, also when the event is malformed (4xx) or the engine fails (5xx), so no
call waits for Kamailio's transaction timer.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from kamailio.requests import CallFieldsError, call_request_from_fields
from kamailio.rtjson import Failure, encode, failure_decision, failure_of, to_rtjson
from routing.resolver import Decision, Outcome, RouteTable
from routing.service import decide

logger = logging.getLogger(__name__)

ROUTING_EVENT = "sip-routing"
# Kamailio's evapi reads each client into a 32 KB buffer (CLIENT_BUFFER_SIZE); a
# longer frame can never complete there and wedges the connection. Stay well below.
MAX_ANSWER = 32000

# Kamailio configs often build the event by string templating; a quote in a
# display name then breaks the JSON. The transaction ids are plain integers that
# can still be read, so the call gets a failure answer instead of a timeout.
_SALVAGE_TINDEX = re.compile(rb'"tindex"\s*:\s*"?(\d{1,10})\b')
_SALVAGE_TLABEL = re.compile(rb'"tlabel"\s*:\s*"?(\d{1,10})\b')
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_REASON = 120


class Kind(enum.StrEnum):
    ANSWERED = "answered"  # a routing event; `answer` is set
    IGNORED = "ignored"  # not a routing event: nothing to answer
    UNANSWERABLE = "unanswerable"  # cannot tell which transaction: nothing can be sent


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one event, for the transport to send, count and log."""

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
    engine_failed: bool = False  # the resolver or database failed (not the event)


def handle_event(
    payload: bytes, *, table: RouteTable, default_tenant: str | None, overloaded: bool = False
) -> Result:
    """Answer one EVAPI event payload.

    `default_tenant` is the slug used for events without a `source_ip` (the
    minimal tutorial event); None means such calls are refused with 403.
    `overloaded` answers 503 without deciding: the event waited so long that
    deciding it would only make the backlog longer. Never raises: engine
    failures become a 5xx answer.
    """
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return _salvage(payload, f"event is not valid JSON ({exc})")
    if not isinstance(event, dict):
        kind = type(event).__name__
        return Result(Kind.UNANSWERABLE, error=f"event is a JSON {kind}, not an object")
    if event.get("event") != ROUTING_EVENT:
        return Result(Kind.IGNORED, error=f"not a routing event (event={event.get('event')!r})")

    tindex, tlabel, problem = _transaction(event)
    if problem:
        return Result(Kind.UNANSWERABLE, error=problem)

    if overloaded:
        return _engine_failure(tindex, tlabel, Failure.OVERLOADED, "shed: waited too long")
    tenant = None if event.get("source_ip") else default_tenant
    try:
        request = call_request_from_fields(event, tenant=tenant)
    except CallFieldsError as exc:
        return _failure(tindex, tlabel, Outcome.INVALID, 400, f"Bad Request: {exc}", str(exc))
    try:
        decision = decide(request, table=table)
    except Exception as exc:
        failure = failure_of(exc)
        if failure is Failure.DATABASE_UNAVAILABLE:
            detail = f"database error: {exc}".strip()
        else:
            logger.exception("routing engine failed on tindex=%s tlabel=%s", tindex, tlabel)
            detail = repr(exc)
        return _engine_failure(tindex, tlabel, failure, detail)
    return _answered(
        decision,
        tindex,
        tlabel,
        caller=decision.caller or request.caller,
        callee=decision.callee or request.callee,
    )


def _too_large(answer: bytes, tindex: int, tlabel: int) -> Result:
    """A short failure in place of an answer Kamailio's 32 KB client buffer cannot hold."""
    problem = f"answer of {len(answer)} bytes is over the {MAX_ANSWER} Kamailio can read"
    logger.error("tindex=%s tlabel=%s: %s", tindex, tlabel, problem)
    return _engine_failure(tindex, tlabel, Failure.ANSWER_TOO_LARGE, problem)


def _transaction(event: dict[str, Any]) -> tuple[int, int, str]:
    """(tindex, tlabel, "") or (0, 0, what is wrong)."""
    values = []
    for name in ("tindex", "tlabel"):
        value = event.get(name)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0, 0, f"routing event without a usable {name} ({value!r}): cannot be answered"
        values.append(value)
    return values[0], values[1], ""


def _salvage(payload: bytes, problem: str) -> Result:
    tindex = _SALVAGE_TINDEX.search(payload)
    tlabel = _SALVAGE_TLABEL.search(payload)
    if tindex is None or tlabel is None:
        return Result(Kind.UNANSWERABLE, error=f"{problem}; no tindex/tlabel to answer")
    reason = "Bad Request: event is not valid JSON"
    return _failure(
        int(tindex.group(1)), int(tlabel.group(1)), Outcome.INVALID, 400, reason, problem
    )


def _failure(
    tindex: int, tlabel: int, outcome: Outcome, code: int, reason: str, error: str
) -> Result:
    reason = _UNPRINTABLE.sub("?", reason)[:_MAX_REASON]
    decision = Decision(outcome=outcome, code=code, reason=reason, trace=(error,))
    return _answered(decision, tindex, tlabel, error=error)


def _engine_failure(tindex: int, tlabel: int, failure: Failure, error: str) -> Result:
    decision = failure_decision(failure, error)
    return _answered(decision, tindex, tlabel, error=error, engine_failed=failure.engine_failed)


def _answered(decision: Decision, tindex: int, tlabel: int, **details: Any) -> Result:
    """The answer to send for `decision`, unless it is too large for Kamailio to read."""
    answer = _answer(decision, tindex, tlabel)
    if len(answer) > MAX_ANSWER:
        return _too_large(answer, tindex, tlabel)
    return Result(
        Kind.ANSWERED,
        answer=answer,
        tindex=tindex,
        tlabel=tlabel,
        outcome=str(decision.outcome),
        code=decision.code,
        reason=decision.reason,
        **details,
    )


def _answer(decision: Decision, tindex: int, tlabel: int) -> bytes:
    document = to_rtjson(decision)
    document["xtra"] = {"tindex": tindex, "tlabel": tlabel}
    return encode(document)
