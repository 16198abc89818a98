"""A route's targets in the order calls try them, for a glance: lanes, shares, what is off.

Targets of the same priority form a lane, tried before the next one; within a lane
each trunk's weight is shown as its share of the lane's calls (70% / 30%); a
parallel route is one group, rung together. A trunk routing would skip (inactive,
its carrier inactive, unhealthy or forced out of service) is struck through with
the reason in its title. The prefix list's targets column and the number box both
render through here, from the admin's rows or the resolver's (`TargetRow`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from itertools import groupby

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from routing import health
from routing.models import RouteTarget, TrunkHealth
from routing.resolver import health_status
from routing.rows import TargetRow

# The states in which routing does not use the trunk (routing.resolver._unhealthy).
OUT_OF_SERVICE = {"unhealthy": "unhealthy", "forced_down": "forced out of service"}


@dataclass(frozen=True, slots=True)
class Step:
    """One target: its trunk's name, where it stands, and why routing skips it ("")."""

    label: str
    priority: int
    weight: int
    off: str = ""
    health: str = "healthy"
    schedule: str = ""
    share: float | None = None  # of its lane's calls; None when alone in its lane

    @property
    def share_label(self) -> str:
        return "" if self.share is None else f"{self.share:.0%}"


@dataclass(frozen=True, slots=True)
class Lane:
    priority: int
    steps: tuple[Step, ...]


def _why_off(*, trunk_active: bool, carrier_active: bool, status: str) -> str:
    if not trunk_active:
        return "trunk inactive"
    if not carrier_active:
        return "carrier inactive"
    return OUT_OF_SERVICE.get(status, "")


def step_of_target(target: RouteTarget, now: dt.datetime) -> Step:
    """A RouteTarget loaded with its trunk, carrier, health row and schedule."""
    trunk = target.trunk
    try:
        row = trunk.health
    except TrunkHealth.DoesNotExist:
        row = None
    status = health.status(row, now)
    return Step(
        label=trunk.name,
        priority=target.priority,
        weight=target.weight,
        off=_why_off(
            trunk_active=trunk.is_active, carrier_active=trunk.carrier.is_active, status=status
        ),
        health=status,
        schedule=str(target.schedule) if target.schedule_id else "",
    )


def step_of_row(target: TargetRow, now: dt.datetime, schedules: dict[int, str]) -> Step:
    """A target as the resolver reads it from the live table."""
    trunk = target.trunk
    status = health_status(
        trunk.health_override, trunk.health_state, trunk.health_until, now.timestamp()
    )
    return Step(
        label=trunk.label,
        priority=target.priority,
        weight=target.weight,
        off=_why_off(
            trunk_active=trunk.is_active, carrier_active=trunk.carrier_active, status=status
        ),
        health=status,
        schedule=schedules.get(target.schedule_id, "") if target.schedule_id else "",
    )


def lanes(steps: list[Step], routing_mode: str) -> list[Lane]:
    """The steps in lanes: by priority (a parallel route is one lane), weight first,
    each with its share of the lane's weight when the lane has more than one."""
    if routing_mode == "parallel":
        groups = [(0, sorted(steps, key=lambda s: (s.priority, -s.weight, s.label)))]
    else:
        ordered = sorted(steps, key=lambda s: (s.priority, -s.weight, s.label))
        groups = [(p, list(g)) for p, g in groupby(ordered, key=lambda s: s.priority)]
    found = []
    for priority, group in groups:
        total = sum(s.weight for s in group)
        shared = len(group) > 1 and routing_mode != "parallel" and total > 0
        found.append(
            Lane(
                priority=priority,
                steps=tuple(replace(s, share=s.weight / total if shared else None) for s in group),
            )
        )
    return found


def describe(steps: list[Step], routing_mode: str) -> str:
    """Plain text of the order, for a title attribute and for tests."""
    parts = []
    for lane in lanes(steps, routing_mode):
        names = [_words(step) + (f" [{step.off}]" if step.off else "") for step in lane.steps]
        joined = " + ".join(names) if routing_mode == "parallel" else " | ".join(names)
        parts.append(f"parallel: {joined}" if routing_mode == "parallel" else joined)
    return " → ".join(parts)


def _words(step: Step) -> str:
    text = step.label
    if step.share is not None:
        text += f" {step.share_label}"
    if step.schedule:
        text += f" (when {step.schedule})"
    return text


def render(steps: list[Step], routing_mode: str) -> SafeString:
    """The order as compact HTML: lanes joined by →, shares, off trunks struck through."""
    if not steps:
        return format_html("")
    html_lanes = []
    for lane in lanes(steps, routing_mode):
        sign = "+" if routing_mode == "parallel" else "|"
        items = format_html_join(
            format_html('<span class="ro-sep">{}</span>', sign),
            "{}",
            ((_step_html(step),) for step in lane.steps),
        )
        css = "ro-lane ro-parallel" if routing_mode == "parallel" else "ro-lane"
        html_lanes.append(format_html('<span class="{}">{}</span>', css, items))
    arrow = format_html('<span class="ro-arrow">{}</span>', "→")
    return format_html(
        '<span class="route-order" title="{}">{}</span>',
        describe(steps, routing_mode),
        format_html_join(arrow, "{}", ((lane,) for lane in html_lanes)),
    )


def _step_html(step: Step) -> SafeString:
    share = when = ""
    if step.share_label:
        share = format_html(' <span class="ro-share">{}</span>', step.share_label)
    if step.schedule:
        when = format_html(' <span class="ro-when">(when {})</span>', step.schedule)
    if step.off:
        return format_html(
            '<s class="ro-off" title="{}">{}</s>{}{}', step.off, step.label, share, when
        )
    css = "ro-step ro-half" if step.health == "half_open" else "ro-step"
    return format_html('<span class="{}">{}</span>{}{}', css, step.label, share, when)
