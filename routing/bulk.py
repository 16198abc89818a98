"""Changes to many routes at once: a trunk's routes moved to another trunk, and bulk edits
of a filtered set of routes (active, routing mode, a target added, removed or re-weighted).

They land where one admin edit of a route lands (routing.services.save_route): in the
DialPrefix and RouteTarget rows, which are a staged plan's draft (live only once
published, docs/versions.md) and an unstaged plan's live table. Each changed row gets
its historical row (who, when, why: the change reason names the bulk edit), and the
route-table change log names every changed route, so the compiled tables reload them.

Bounded work: a handful of statements per 5,000 routes, never one per route. The
rows are read once (their fingerprint, below), then written by the ids that read
counted, with one UPDATE, INSERT or DELETE per kind of change and slice of ids (not
by the filter again: switching off "the active routes" changes what that filter
selects), and their historical rows are bulk-inserted. On PostgreSQL the per-row change triggers
are off for the transaction (routing.changes.bulk_writes) and the change log is
written once per plan: one change per route, or one of the whole plan beyond
PER_PREFIX_CHANGES routes, as a publish does.

Previews and stale previews: a preview counts what an apply would change and hands
out a fingerprint of the rows it counted (their ids and the columns the change reads).
The apply locks the rows, computes the fingerprint again and refuses if it differs:
a route that joined the filtered set, left it or changed since the preview is never
written behind the operator's back; they see the new count and apply again. Applying
to the intersection instead would silently do something other than what was counted;
carrying the ids instead of a digest would not fit a form for 10^5 routes. It is the
rule of versions.publishing's `expected` version, applied to rows.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from django.utils.translation import ngettext

from routing import changes
from routing.models import DialPrefix, RouteTarget, RoutingMode, Trunk
from routing.services import require_tenant
from tenants.scoping import scope_queryset

SAMPLE = 20  # routes a preview lists
CHUNK = 5_000  # routes written per statement
MAX_PRIORITY = 32767  # RouteTarget.priority is a PositiveSmallIntegerField
PER_PREFIX_CHANGES = 2_000  # beyond this many routes of a plan, one change of the whole plan
REPLACE, FAILOVER = "replace", "failover"
TARGET_ADD, TARGET_REMOVE, TARGET_SET = "add", "remove", "set"


class StalePreview(Exception):
    """The rows changed since the preview: nothing was written; preview again."""


@dataclass
class Preview:
    """What an apply would do: `count` routes change; `sample` lists the first few."""

    selected: int  # routes in the set (the trunk's routes, or the filtered rows)
    count: int  # routes that would change
    fingerprint: str
    sample: list[DialPrefix] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # counts per kind of change
    staged_plans: list[str] = field(default_factory=list)  # plans whose draft is written


@dataclass(frozen=True)
class RouteEdit:
    """A bulk edit: each part left None or "" is left alone."""

    is_active: bool | None = None
    routing_mode: str | None = None
    trunk: Trunk | None = None  # the target the next three are about
    target: str = ""  # TARGET_ADD, TARGET_REMOVE or TARGET_SET
    priority: int | None = None  # for TARGET_ADD (default 1) and TARGET_SET
    weight: int | None = None  # for TARGET_ADD (default 100) and TARGET_SET

    def describe(self) -> str:
        """The history's change reason: what the operator asked for."""
        parts = []
        if self.is_active is not None:
            parts.append(f"active={'yes' if self.is_active else 'no'}")
        if self.routing_mode:
            parts.append(f"routing mode={self.routing_mode}")
        if self.trunk is not None and self.target:
            values = "".join(
                f" {name}={value}"
                for name, value in (("priority", self.priority), ("weight", self.weight))
                if value is not None
            )
            parts.append(f"{self.target} target {self.trunk}{values}")
        return "Bulk edit: " + ", ".join(parts)

    def check(self) -> None:
        if self.routing_mode and self.routing_mode not in RoutingMode.values:
            raise ValidationError({"routing_mode": "Routing mode must be serial or parallel."})
        if self.target and self.trunk is None:
            raise ValidationError({"trunk": "Pick the trunk this target change is about."})
        if self.target == TARGET_SET and self.priority is None and self.weight is None:
            raise ValidationError({"priority": "Give a priority, a weight or both to set."})
        if self.weight is not None and self.weight < 1:
            raise ValidationError({"weight": "A weight must be more than 0."})
        if self.is_active is None and not self.routing_mode and not self.target:
            raise ValidationError("Choose at least one change.")


# --- The trunk page: the routes that use a trunk, moved to another ---------------------


def routes_using(trunk: Trunk) -> QuerySet[DialPrefix]:
    """The routes with `trunk` among their targets (a trunk is on a route at most once)."""
    return DialPrefix.objects.filter(targets__trunk=trunk).select_related("plan")


def preview_trunk_move(*, user, trunk: Trunk, new_trunk: Trunk, mode: str) -> Preview:
    """What moving `trunk`'s routes to `new_trunk` would change (nothing is written)."""
    _check_move(user=user, trunk=trunk, new_trunk=new_trunk, mode=mode)
    state = _move_state(trunk, new_trunk, mode)
    return _preview(state, _move_notes(state, trunk, new_trunk, mode), state.changed)


def move_trunk(*, user, trunk: Trunk, new_trunk: Trunk, mode: str, expected: str) -> Preview:
    """Replace `trunk` by `new_trunk` on every route that uses it (REPLACE), or add
    `new_trunk` right after it (FAILOVER: one priority later, later targets shifted).

    A route that already has `new_trunk` keeps it where it is: REPLACE then only
    drops `trunk` from it, FAILOVER leaves it alone. One transaction; raises
    StalePreview when the routes changed since the preview that gave `expected`.
    """
    _check_move(user=user, trunk=trunk, new_trunk=new_trunk, mode=mode)
    reason = (
        f"Bulk edit: trunk {trunk} replaced by {new_trunk}"
        if mode == REPLACE
        else f"Bulk edit: trunk {new_trunk} added as failover after {trunk}"
    )
    with transaction.atomic(), changes.bulk_writes():
        _lock(DialPrefix.objects.filter(targets__trunk=trunk))
        state = _move_state(trunk, new_trunk, mode)
        if state.fingerprint != expected:
            raise StalePreview(_stale_message(state))
        mine = RouteTarget.objects.filter(trunk=trunk)
        both = mine.filter(prefix__targets__trunk=new_trunk)
        only = mine.exclude(prefix__targets__trunk=new_trunk)
        now = timezone.now()
        if mode == REPLACE:
            dropped = list(both)
            _history(RouteTarget, dropped, "-", user, reason, now)
            _delete(both)
            moved = list(only)
            for target in moved:
                target.trunk_id = new_trunk.pk
            RouteTarget.objects.filter(pk__in=only.values("pk")).update(trunk=new_trunk)
            _history(RouteTarget, moved, "~", user, reason, now)
        else:
            olds = list(only)
            later = _later_targets(olds, trunk, new_trunk)
            if any(t.priority >= MAX_PRIORITY for t in [*olds, *later]):
                raise ValidationError(
                    f"A route has a target at priority {MAX_PRIORITY}, the last there is: "
                    "there is no priority after it for the failover."
                )
            for target in later:
                target.priority += 1
            RouteTarget.objects.bulk_update(later, ["priority"], batch_size=500)
            _history(RouteTarget, later, "~", user, reason, now)
            added = RouteTarget.objects.bulk_create(
                [
                    RouteTarget(
                        prefix_id=old.prefix_id,
                        trunk=new_trunk,
                        priority=old.priority + 1,
                        weight=100,
                        schedule_id=old.schedule_id,
                    )
                    for old in olds
                ],
                batch_size=500,
            )
            _history(RouteTarget, _with_ids(added), "+", user, reason, now)
        _check_scope(user, DialPrefix.objects.filter(targets__trunk=new_trunk))
        _record(state.keys)
    return _preview(state, _move_notes(state, trunk, new_trunk, mode), state.changed)


def _check_move(*, user, trunk: Trunk, new_trunk: Trunk, mode: str) -> None:
    if mode not in (REPLACE, FAILOVER):
        raise ValidationError({"mode": "Replace the trunk, or add the other as failover."})
    if new_trunk.pk == trunk.pk:
        raise ValidationError({"new_trunk": "Pick another trunk than this one."})
    if new_trunk.carrier.tenant_id != trunk.carrier.tenant_id:
        raise ValidationError({"new_trunk": "Pick a trunk of the same tenant."})
    require_tenant(user=user, tenant=trunk.carrier.tenant)
    visible = scope_queryset(Trunk.objects.filter(pk__in=[trunk.pk, new_trunk.pk]), user)
    if visible.count() != 2:
        raise PermissionDenied("You can only change your own tenant's routing.")


@dataclass
class _State:
    selected: int = 0
    fingerprint: str = ""
    changed: list[int] = field(default_factory=list)  # route ids, ascending
    keys: set[tuple[int, int, str]] = field(default_factory=set)  # (tenant, plan, prefix)
    staged: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    columns: list[int] = field(default_factory=list)  # routes whose active or mode changes
    targets: list[int] = field(default_factory=list)  # routes whose target changes


def _move_state(trunk: Trunk, new_trunk: Trunk, mode: str) -> _State:
    has_new = set(
        RouteTarget.objects.filter(trunk=new_trunk, prefix__targets__trunk=trunk).values_list(
            "prefix_id", flat=True
        )
    )
    rows = (
        RouteTarget.objects.filter(trunk=trunk)
        .order_by("prefix_id")
        .values_list(
            "prefix_id",
            "id",
            "priority",
            "weight",
            "schedule_id",
            "prefix__tenant_id",
            "prefix__plan_id",
            "prefix__prefix",
            "prefix__plan__published_version",
            "prefix__plan__name",
        )
    )
    state, digest = _State(), hashlib.sha256(f"{new_trunk.pk}:{mode};".encode())
    for (
        route,
        target,
        priority,
        weight,
        schedule,
        tenant,
        plan,
        prefix,
        staged,
        name,
    ) in rows.iterator(chunk_size=10_000):
        digest.update(
            f"{route}:{target}:{priority}:{weight}:{schedule}:{route in has_new};".encode()
        )
        state.selected += 1
        state.counts["both"] += route in has_new
        if mode == FAILOVER and route in has_new:
            continue  # it has the other trunk already: left as it is
        state.changed.append(route)
        state.keys.add((tenant, plan, prefix))
        if staged is not None:
            state.staged.add(name)
    state.fingerprint = digest.hexdigest()
    return state


def _move_notes(state: _State, trunk: Trunk, new_trunk: Trunk, mode: str) -> list[str]:
    both = state.counts["both"]
    if mode == REPLACE:
        notes = [f"{routes(state.selected - both)}: {trunk} becomes {new_trunk}, same place."]
        if both:
            notes.append(f"{routes(both)} already had {new_trunk}: {trunk} is removed from them.")
    else:
        notes = [
            f"{routes(state.selected - both)}: {new_trunk} is added one priority after {trunk}; "
            "later targets move one priority down."
        ]
        if both:
            notes.append(f"{routes(both)} already had {new_trunk}: left as they are.")
    return notes


def _later_targets(olds: list[RouteTarget], trunk: Trunk, new_trunk: Trunk) -> list[RouteTarget]:
    """The targets after the old trunk's on the routes that get the failover: they
    move one priority later, so the failover alone comes right after the old trunk."""
    after = {old.prefix_id: old.priority for old in olds}
    candidates = (
        RouteTarget.objects.filter(prefix__targets__trunk=trunk)
        .exclude(trunk=trunk)
        .exclude(prefix__targets__trunk=new_trunk)
    )
    return [t for t in candidates if t.priority > after[t.prefix_id]]


# --- Bulk edit of a filtered set of routes ---------------------------------------------


def preview_edit(*, user, routes: QuerySet[DialPrefix], edit: RouteEdit) -> Preview:
    """What `edit` would change among `routes` (the change list's filtered rows)."""
    edit.check()
    base = _base(user, routes)
    _check_edit_tenant(user, base, edit)
    state = _edit_state(base, edit)
    return _preview(state, _edit_notes(state, edit), state.changed)


def apply_edit(*, user, routes: QuerySet[DialPrefix], edit: RouteEdit, expected: str) -> Preview:
    """Apply `edit` to `routes` in one transaction; StalePreview when they changed since
    the preview that gave `expected`."""
    edit.check()
    reason = edit.describe()
    with transaction.atomic(), changes.bulk_writes():
        base = _base(user, routes)
        _lock(base)
        _check_edit_tenant(user, base, edit)
        state = _edit_state(base, edit)
        if state.fingerprint != expected:
            raise StalePreview(_stale_message(state))
        # Written by the ids counted (and locked) above, not by the filter again: an
        # edit can change what the filter selects (switch off the active routes).
        now = timezone.now()
        columns = {}
        if edit.is_active is not None:
            columns["is_active"] = edit.is_active
        if edit.routing_mode:
            columns["routing_mode"] = edit.routing_mode
        for ids in _chunks(state.columns):
            rows = list(DialPrefix.objects.filter(pk__in=ids))
            for row in rows:
                for name, value in columns.items():
                    setattr(row, name, value)
            DialPrefix.objects.filter(pk__in=ids).update(**columns)
            _history(DialPrefix, rows, "~", user, reason, now)
        for ids in _chunks(state.targets):
            _edit_targets(ids, edit, user, reason, now)
        for ids in _chunks(state.changed):
            _check_scope(user, DialPrefix.objects.filter(pk__in=ids))
        _record(state.keys)
    return _preview(state, _edit_notes(state, edit), state.changed)


def _base(user, routes: QuerySet[DialPrefix]) -> QuerySet[DialPrefix]:
    """The routes as a plain subquery (the change list's may join and be DISTINCT), scoped."""
    return scope_queryset(DialPrefix.objects.filter(pk__in=routes.values("pk")), user)


def _check_edit_tenant(user, base: QuerySet[DialPrefix], edit: RouteEdit) -> None:
    if edit.trunk is None or not edit.target:
        return
    tenant = edit.trunk.carrier.tenant
    require_tenant(user=user, tenant=tenant)
    if not scope_queryset(Trunk.objects.filter(pk=edit.trunk.pk), user).exists():
        raise PermissionDenied("You can only change your own tenant's routing.")
    others = base.exclude(tenant=tenant).count()
    if others:
        raise ValidationError(
            {
                "trunk": f"The selection has {routes(others)} outside {tenant}, the trunk's "
                "tenant: filter the list by tenant first."
            }
        )


def _edit_state(base: QuerySet[DialPrefix], edit: RouteEdit) -> _State:
    targets: dict[int, tuple[int, int]] = {}
    if edit.trunk is not None and edit.target:
        targets = {
            prefix: (priority, weight)
            for prefix, priority, weight in RouteTarget.objects.filter(
                trunk=edit.trunk, prefix__in=base.values("pk")
            ).values_list("prefix_id", "priority", "weight")
        }
    rows = base.order_by("pk").values_list(
        "pk",
        "is_active",
        "routing_mode",
        "tenant_id",
        "plan_id",
        "prefix",
        "plan__published_version",
        "plan__name",
    )
    # The edit itself is in the fingerprint: a form changed after its preview is refused.
    state, digest = _State(), hashlib.sha256(repr(edit).encode())
    for pk, active, mode, tenant, plan, prefix, staged, name in rows.iterator(chunk_size=10_000):
        target = targets.get(pk)
        digest.update(f"{pk}:{active}:{mode}:{target};".encode())
        state.selected += 1
        parts = []
        if edit.is_active is not None and active != edit.is_active:
            parts.append("active")
        if edit.routing_mode and mode != edit.routing_mode:
            parts.append("mode")
        has = target is not None
        if (edit.target, has) in ((TARGET_ADD, False), (TARGET_REMOVE, True)):
            parts.append("target")
        elif edit.target == TARGET_SET and target is not None:
            priority = edit.priority if edit.priority is not None else target[0]
            weight = edit.weight if edit.weight is not None else target[1]
            if (priority, weight) != target:
                parts.append("target")
        for part in parts:
            state.counts[part] += 1
        if edit.target == TARGET_SET and target is None:
            state.counts["without"] += 1
        if "active" in parts or "mode" in parts:
            state.columns.append(pk)
        if "target" in parts:
            state.targets.append(pk)
        if parts:
            state.changed.append(pk)
            state.keys.add((tenant, plan, prefix))
            if staged is not None:
                state.staged.add(name)
    state.fingerprint = digest.hexdigest()
    return state


def _edit_notes(state: _State, edit: RouteEdit) -> list[str]:
    notes = []
    if edit.is_active is not None:
        switched = "switched on" if edit.is_active else "switched off"
        notes.append(f"{routes(state.counts['active'])} {switched}.")
    if edit.routing_mode:
        notes.append(f"{routes(state.counts['mode'])} set to {edit.routing_mode}.")
    if edit.target == TARGET_ADD:
        notes.append(
            f"{routes(state.counts['target'])}: the target {edit.trunk} is added "
            f"(priority {1 if edit.priority is None else edit.priority}, "
            f"weight {edit.weight or 100}); routes that have it already keep theirs."
        )
    elif edit.target == TARGET_REMOVE:
        notes.append(f"{routes(state.counts['target'])}: the target {edit.trunk} is removed.")
    elif edit.target == TARGET_SET:
        notes.append(f"{routes(state.counts['target'])}: the target {edit.trunk} changes.")
        if state.counts["without"]:
            notes.append(f"{routes(state.counts['without'])} without {edit.trunk}: left alone.")
    return notes


def _edit_targets(ids: list[int], edit: RouteEdit, user, reason: str, now) -> None:
    """The target part of `edit`, on these routes (each one it changes)."""
    trunk = edit.trunk
    on_trunk = RouteTarget.objects.filter(trunk=trunk, prefix_id__in=ids)
    if edit.target == TARGET_ADD:
        added = RouteTarget.objects.bulk_create(
            [
                RouteTarget(
                    prefix_id=pk,
                    trunk=trunk,
                    priority=edit.priority if edit.priority is not None else 1,
                    weight=edit.weight if edit.weight is not None else 100,
                )
                for pk in ids
            ],
            batch_size=500,
        )
        _history(RouteTarget, _with_ids(added), "+", user, reason, now)
    elif edit.target == TARGET_REMOVE:
        _history(RouteTarget, list(on_trunk), "-", user, reason, now)
        _delete(on_trunk)
    else:
        values = {
            name: value
            for name, value in (("priority", edit.priority), ("weight", edit.weight))
            if value is not None
        }
        rows = list(on_trunk)
        for row in rows:
            for name, value in values.items():
                setattr(row, name, value)
        on_trunk.update(**values)
        _history(RouteTarget, rows, "~", user, reason, now)


# --- Shared -----------------------------------------------------------------------------


def routes(count: int) -> str:
    """ "1 route", "2 routes"."""
    return ngettext("%(count)d route", "%(count)d routes", count) % {"count": count}


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    """Ids in slices that fit any database's parameter limit (SQLite: 32,766)."""
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _preview(state: _State, notes: list[str], changed: list[int]) -> Preview:
    sample = list(
        DialPrefix.objects.filter(pk__in=changed[:SAMPLE])
        .select_related("plan", "tenant")
        .prefetch_related("targets__trunk__carrier")
        .order_by("prefix", "pk")
    )
    return Preview(
        selected=state.selected,
        count=len(changed),
        fingerprint=state.fingerprint,
        sample=sample,
        notes=notes,
        staged_plans=sorted(state.staged),
    )


def _stale_message(state: _State) -> str:
    return (
        "These routes changed since the preview (someone edited, added or removed some): "
        f"nothing was changed. Here is the new preview ({routes(state.selected)}): apply "
        "again if it is still what you want."
    )


def _lock(queryset: QuerySet) -> None:
    """Hold the rows until the transaction ends (PostgreSQL), so the fingerprint stays true.

    SQLite has one writer at a time; its transaction is the lock."""
    if connection.vendor == "postgresql":
        list(
            DialPrefix.objects.filter(pk__in=queryset.values("pk"))
            .select_for_update()
            .values_list("pk", flat=True)
        )


def _delete(queryset: QuerySet) -> None:
    """One DELETE for the set: QuerySet.delete() would fetch and signal row by row
    (simple_history's post_delete), and the history is written in bulk here instead."""
    sql, params = queryset.values("pk").query.sql_with_params()
    table = queryset.model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT * FROM ({sql}) AS doomed)",  # noqa: S608
            params,
        )


def _with_ids(rows: list[Model]) -> list[Model]:
    """bulk_create() gives back ids on PostgreSQL and SQLite (RETURNING), as needed here."""
    if rows and rows[0].pk is None:
        raise RuntimeError("This database does not return the ids of bulk-created rows.")
    return rows


def _history(model: type[Model], rows: Iterable[Model], kind: str, user, reason: str, now) -> None:
    """One historical row per changed row, inserted in bulk (simple_history's own
    bulk_history_create knows only "+" and "~"; a removal is "-")."""
    history = model.history.model
    who = user if user is not None and user.is_authenticated else None
    history.objects.bulk_create(
        [
            history(
                history_date=now,
                history_user=who,
                history_change_reason=reason,
                history_type=kind,
                **{f.attname: getattr(row, f.attname) for f in history.tracked_fields},
            )
            for row in rows
        ],
        batch_size=500,
    )


def _check_scope(user, routes: QuerySet[DialPrefix]) -> None:
    """After the write, inside the transaction: every route touched is the user's."""
    if user is None:
        return
    total = DialPrefix.objects.filter(pk__in=routes.values("pk")).count()
    if scope_queryset(DialPrefix.objects.filter(pk__in=routes.values("pk")), user).count() != total:
        raise PermissionDenied("This change would touch another tenant's rows.")


def _record(keys: set[tuple[int, int, str]]) -> None:
    """The change log: per plan, one change per route, or the whole plan beyond
    PER_PREFIX_CHANGES. SQLite's triggers stayed on and recorded every row already."""
    if connection.vendor != "postgresql":
        return
    by_plan: dict[tuple[int, int], list[str]] = defaultdict(list)
    for tenant, plan, prefix in keys:
        by_plan[(tenant, plan)].append(f"{plan}:{prefix}")
    for (tenant, plan), plan_keys in sorted(by_plan.items()):
        if len(plan_keys) > PER_PREFIX_CHANGES:
            changes.record_change(changes.TABLE, tenant_id=tenant, key=str(plan))
        else:
            changes.record_changes(changes.PREFIX, sorted(plan_keys), tenant_id=tenant)
