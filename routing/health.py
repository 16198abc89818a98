"""Trunk health: the policy that takes a trunk out of routing, and its only writer.

The policy (`apply`) is pure: a trunk's policy, its current health and an ordered batch
of attempt outcomes in, the new health and the transitions out. Times are Unix seconds.

- A failed attempt is one whose final code says the trunk is in trouble: 408 (no final
  reply in time), any 5xx, or 0 (no reply at all). Everything else (2xx, 4xx such as
  486 or 404, 6xx) is the callee's answer and counts as a success.
- The ratio looks at a tumbling window of `window` seconds: windows are aligned on
  multiples of `window` since the epoch, and the counters restart when an outcome
  falls in a later window than the current one (no sliding, no decay).
- Healthy becomes unhealthy when the window has at least `min_attempts` attempts and
  failures * 100 >= ratio * attempts, or when `consecutive` attempts in a row failed
  (either rule is off when its threshold is None).
- Unhealthy holds for `cooldown` seconds (until = now + cooldown). Outcomes of attempts
  made before the end of the cool-down are calls that were in flight: ignored.
- After the cool-down the trunk is half-open (the resolver gives it a small share of
  calls): the first outcome after `until` decides: a success makes it healthy
  ("recovered"), a failure unhealthy again with a new cool-down.
- The operator's override (auto/up/down) does not change the policy: outcomes are
  still counted; the resolver reads the override before the state.

The I/O (`observe`, `override`) writes TrunkHealth and TrunkHealthEvent, and records
a 'trunk' route change when a trunk's state changes, so every process's compiled table
reloads that trunk within its poll interval (0.2 s). Updates of the counters alone
record nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from django.db import transaction

from routing import changes
from routing.models import HealthOverride, HealthState, Trunk, TrunkHealth, TrunkHealthEvent
from routing.resolver import health_status

HEALTHY = HealthState.HEALTHY.value
UNHEALTHY = HealthState.UNHEALTHY.value


def is_failure(code: int) -> bool:
    """Whether a final SIP code says something bad about the trunk (not the callee)."""
    return code == 0 or code == 408 or 500 <= code < 600


@dataclass(frozen=True, slots=True)
class Policy:
    """A trunk's health policy (Trunk.health_*)."""

    window: int = 60
    min_attempts: int = 10
    failure_ratio: int | None = 50  # percent
    consecutive: int | None = 5
    cooldown: int = 60

    @classmethod
    def of(cls, trunk: Trunk) -> Policy:
        return cls(
            window=trunk.health_window,
            min_attempts=trunk.health_min_attempts,
            failure_ratio=trunk.health_failure_ratio,
            consecutive=trunk.health_consecutive_failures,
            cooldown=trunk.health_cooldown,
        )


@dataclass(frozen=True, slots=True)
class Health:
    """A trunk's health and the policy's counters (TrunkHealth, in Unix seconds)."""

    state: str = HEALTHY
    since: float | None = None
    until: float | None = None
    reason: str = ""
    window_start: float | None = None
    window_attempts: int = 0
    window_failures: int = 0
    consecutive_failures: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    at: float
    state: str
    reason: str


def apply(
    policy: Policy, health: Health, outcomes: Iterable[tuple[float, bool]], now: float
) -> tuple[Health, list[Transition]]:
    """The health after `outcomes` ((at, failed), in order), and the transitions made.

    Transitions happen at `now` (when the engine learns of them); a state that changes
    twice in one batch gives two transitions.
    """
    transitions: list[Transition] = []

    def become(state: str, reason: str) -> None:
        nonlocal health
        until = now + policy.cooldown if state == UNHEALTHY else None
        health = replace(health, state=state, since=now, until=until, reason=reason)
        transitions.append(Transition(now, state, reason))

    for at, failed in outcomes:
        if health.state == UNHEALTHY:
            if health.until is not None and at < health.until:
                continue  # an attempt made during the cool-down: a call already in flight
            if failed:
                become(UNHEALTHY, "a half-open probe failed")
            else:
                health = replace(
                    health,
                    window_start=None,
                    window_attempts=0,
                    window_failures=0,
                    consecutive_failures=0,
                )
                become(HEALTHY, "recovered: a half-open probe succeeded")
            continue
        start = at - at % policy.window
        if health.window_start is None or start > health.window_start:
            health = replace(health, window_start=start, window_attempts=0, window_failures=0)
        health = replace(
            health,
            window_attempts=health.window_attempts + 1,
            window_failures=health.window_failures + failed,
            consecutive_failures=health.consecutive_failures + 1 if failed else 0,
        )
        if policy.consecutive is not None and health.consecutive_failures >= policy.consecutive:
            become(UNHEALTHY, f"{health.consecutive_failures} failed attempts in a row")
        elif (
            policy.failure_ratio is not None
            and health.window_attempts >= policy.min_attempts
            and health.window_failures * 100 >= policy.failure_ratio * health.window_attempts
        ):
            become(
                UNHEALTHY,
                f"{health.window_failures} of {health.window_attempts} attempts failed "
                f"in {policy.window} s",
            )
    return health, transitions


# --- I/O ----------------------------------------------------------------------------


def _seconds(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _datetime(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.UTC)


def _load(row: TrunkHealth) -> Health:
    return Health(
        state=row.state,
        since=_seconds(row.since),
        until=_seconds(row.until),
        reason=row.reason,
        window_start=_seconds(row.window_start),
        window_attempts=row.window_attempts,
        window_failures=row.window_failures,
        consecutive_failures=row.consecutive_failures,
    )


def _store(row: TrunkHealth, health: Health) -> None:
    row.state = health.state
    row.since = _datetime(health.since)
    row.until = _datetime(health.until)
    row.reason = health.reason[:200]
    row.window_start = _datetime(health.window_start)
    row.window_attempts = health.window_attempts
    row.window_failures = health.window_failures
    row.consecutive_failures = health.consecutive_failures


def _locked_rows(trunks: Sequence[Trunk], now: dt.datetime) -> dict[int, TrunkHealth]:
    """The trunks' TrunkHealth rows, created where missing, locked until the transaction ends."""
    ids = [trunk.pk for trunk in trunks]
    TrunkHealth.objects.bulk_create(
        [TrunkHealth(trunk_id=pk, since=now) for pk in ids], ignore_conflicts=True
    )
    return {
        row.trunk_id: row
        for row in TrunkHealth.objects.select_for_update().filter(trunk_id__in=ids).order_by("pk")
    }


def observe(batch: Mapping[int, Sequence[tuple[float, bool]]], now: dt.datetime) -> int:
    """Apply the policy to each trunk's outcomes ((at as Unix seconds, failed), in order).

    One transaction: the trunks' health rows are locked (in id order, so processes
    flushing at once do not deadlock), updated, a TrunkHealthEvent is written per
    transition and a route change recorded per trunk whose state changed. Unknown
    trunk ids are ignored. Returns how many trunks changed state.
    """
    if not batch:
        return 0
    changed = 0
    with transaction.atomic():
        trunks = list(Trunk.objects.filter(pk__in=list(batch)).order_by("pk"))
        rows = _locked_rows(trunks, now)
        for trunk in trunks:
            row = rows[trunk.pk]
            before = _load(row)
            outcomes = sorted(batch[trunk.pk], key=lambda outcome: outcome[0])
            after, transitions = apply(Policy.of(trunk), before, outcomes, now.timestamp())
            if after == before:
                continue
            _store(row, after)
            row.save()
            if not transitions:
                continue
            TrunkHealthEvent.objects.bulk_create(
                TrunkHealthEvent(
                    trunk_id=trunk.pk,
                    at=_datetime(t.at),
                    state=t.state,
                    override=row.override,
                    reason=t.reason[:200],
                )
                for t in transitions
            )
            changes.record_change(changes.TRUNK, key=str(trunk.pk))
            changed += 1
    return changed


OVERRIDE_REASONS = {
    HealthOverride.AUTO.value: "back to automatic",
    HealthOverride.UP.value: "forced in service",
    HealthOverride.DOWN.value: "forced out of service",
}


STATUSES = ("healthy", "unhealthy", "half_open", "forced_up", "forced_down")


def status(row: TrunkHealth | None, now: dt.datetime) -> str:
    """How routing treats the trunk now: one of STATUSES (no row: healthy); the
    resolver's rule (routing.resolver.health_status) applied to the stored row."""
    if row is None:
        return "healthy"
    until = row.until.timestamp() if row.until is not None else None
    return health_status(row.override, row.state, until, now.timestamp())


def override(trunk: Trunk, mode: str, user, reason: str = "") -> TrunkHealth:
    """Set the operator's override of `trunk`'s health; written to its history.

    The caller checks that `user` may change `trunk` (the admin's scoping does).
    """
    if mode not in HealthOverride.values:
        raise ValueError(f"override must be one of {', '.join(HealthOverride.values)}")
    now = dt.datetime.now(dt.UTC)
    with transaction.atomic():
        row = _locked_rows([trunk], now)[trunk.pk]
        row.override = mode
        row.save()
        said = OVERRIDE_REASONS[mode] + (f": {reason}" if reason else "")
        TrunkHealthEvent.objects.create(
            trunk=trunk,
            at=now,
            state=row.state,
            override=mode,
            reason=said[:200],
            user=user if getattr(user, "pk", None) else None,
        )
        changes.record_change(changes.TRUNK, key=str(trunk.pk))
    return row
