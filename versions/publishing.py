"""Staged routing plans: the draft, diffs, publishing, rollback and retention.

A plan is staged from its first publish. From then on its saved routes (DialPrefix
and RouteTarget, whatever writes them: the admin, the API, an import) are its draft,
and calls use the routes of its published version (RoutingPlan.published_version),
stored as routing.models.PublishedRoute rows that each span the versions from
`since` to before `until`. So:

- a publish compares the draft with the published version, closes the rows of the
  routes that changed or went (`until` = the new version) and inserts the new ones
  (`since` = the new version), in one transaction with the version bump, the
  PlanVersion record and the change log entries that tell every process;
- a version therefore costs the rows it changed, not a copy of the table;
- a rollback is a publish whose routes are an older version's, written the same way
  from the rows that differ between the two versions;
- a diff between two versions reads only the rows touched between them; a diff with
  the draft is computed by the database (each draft route joined by key to its
  published row, then the published routes the draft no longer has), and only the
  routes that differ come back.

A route's identity across versions is its plan, prefix, caller prefix or pattern and
schedule (what the database keeps unique); its content is every other column and its
targets (trunk, priority, weight, schedule each, in order). The routes' own ids and
target ids are not content: a re-import that writes the same routes with new ids
changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from routing import changes
from routing.compiled import loading
from routing.deadline import lift_statement_timeout
from routing.models import DialPrefix, PublishedRoute, RouteTarget, RoutingPlan, Schedule, Trunk
from routing.rows import PROFILE_NAMES, RouteRow, names, parse_profile
from versions import route_tests
from versions.models import PlanVersion

DRAFT = None  # a view of a plan: None is its saved routes, a number a published version
# A publish that changes at most this many prefixes tells other processes which ones
# (each reloads just those); a larger one has them rebuild the plan's compiled table,
# answering from the database meanwhile (at the new version already).
PER_PREFIX_CHANGES = 2_000
_CHUNK = 500

_NAMES = names(RouteRow)
_PREFIX = _NAMES.index("prefix")
_KEY_AT = tuple(
    _NAMES.index(n) for n in ("prefix", "caller_prefix", "caller_pattern", "schedule_id")
)
_CONTENT_AT = tuple(i for i, name in enumerate(_NAMES) if name != "id")
_WIDTH = len(_NAMES)
# PublishedRoute columns in the order of a route query's values (loading.routes_query).
_INSERT_COLUMNS = ", ".join(["route_id", *_NAMES[1:], "target_ids", "targets", "plan_id", "since"])
_COPY_COLUMNS = ", ".join(
    ["p.route_id", *(f"p.{n}" for n in _NAMES[1:]), "p.target_ids", "p.targets", "p.plan_id"]
)
_TRUNK_AT, _PRIORITY_AT, _WEIGHT_AT, _SCHEDULE_AT = (
    PROFILE_NAMES.index(n) for n in ("trunk_id", "priority", "weight", "schedule_id")
)


class PublishRefused(Exception):
    """A publish or rollback that cannot be done as asked; the message says why.

    Nothing of it was written.
    """


class RouteTestsFailed(PublishRefused):
    """Route tests failed, and the publish was not forced."""

    def __init__(self, message: str, results: list) -> None:
        super().__init__(message)
        self.results = results


@dataclass(frozen=True, slots=True)
class RouteVersion:
    """A route as one side of a diff has it: its values (RouteRow order) and targets."""

    values: tuple
    target_ids: str | None
    targets: str | None
    row_id: int  # the draft route's id, or the PublishedRoute row's

    @property
    def key(self) -> tuple:
        return tuple(self.values[i] for i in _KEY_AT)

    @property
    def content(self) -> tuple:
        return (*(self.values[i] for i in _CONTENT_AT), self.targets or "")

    def value(self, name: str):
        return self.values[_NAMES.index(name)]

    def target_items(self) -> list[tuple[int, int, int]]:
        """(trunk id, priority, weight) per target, in order."""
        return [
            (item[_TRUNK_AT], item[_PRIORITY_AT], item[_WEIGHT_AT])
            for item in parse_profile(self.targets)
        ]


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One route that differs between two views of a plan."""

    change: str  # "added", "removed" or "changed"
    old: RouteVersion | None
    new: RouteVersion | None

    @property
    def route(self) -> RouteVersion:
        return self.new or self.old  # type: ignore[return-value]

    @property
    def prefix(self) -> str:
        return self.route.values[_PREFIX]

    def changed_columns(self) -> list[str]:
        """The columns (and "targets") whose values differ, for a changed route."""
        if self.old is None or self.new is None:
            return []
        found = [
            _NAMES[i]
            for i in _CONTENT_AT
            if _normal(self.old.values[i]) != _normal(self.new.values[i])
        ]
        if (self.old.targets or "") != (self.new.targets or ""):
            found.append("targets")
        return found


@dataclass
class Diff:
    """How two views of a plan differ: counts, and the first `limit` rows in prefix order."""

    plan: RoutingPlan
    old: int | None
    new: int | None
    added: int = 0
    removed: int = 0
    changed: int = 0
    rows: list[DiffRow] = field(default_factory=list)
    truncated: bool = False

    @property
    def total(self) -> int:
        return self.added + self.removed + self.changed

    @property
    def empty(self) -> bool:
        return self.total == 0


def label(version: int | None) -> str:
    return "the draft" if version is None else f"version {version}"


def _normal(value):
    """SQLite gives booleans as 0/1 and decimals as floats: compare them as such."""
    if isinstance(value, bool):
        return int(value)
    return value


# --- Comparing views of a plan ---


def _compare(old: dict, new: dict) -> Iterator[DiffRow]:
    """The differences of one prefix's routes, by key (few: one per caller and schedule)."""
    for key in sorted(set(old) | set(new), key=lambda k: tuple(str(x) for x in k)):
        before, after = old.get(key), new.get(key)
        if before is None:
            yield DiffRow("added", None, after)
        elif after is None:
            yield DiffRow("removed", before, None)
        elif tuple(map(_normal, before.content)) != tuple(map(_normal, after.content)):
            yield DiffRow("changed", before, after)


def _touched(plan_id: int, low: int, high: int, using: str) -> Iterator[DiffRow]:
    """The differences between published versions low < high, from the rows written
    between them only (a row is in version v when since <= v < until)."""
    connection = connections[using]
    sql, _ = loading.routes_query(connection.vendor, plan_id, 0)
    sql = sql.replace("SELECT ", "SELECT p.id, p.since, p.until, ", 1)
    # routes_query's version condition, replaced by "touched between low and high".
    where = "p.since <= %s AND (p.until IS NULL OR p.until > %s)"
    assert where in sql
    sql = sql.replace(
        where, "((p.since > %s AND p.since <= %s) OR (p.until > %s AND p.until <= %s))"
    ).replace("{where}", "")
    old: dict[tuple, dict] = {}
    new: dict[tuple, dict] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [plan_id, low, high, low, high])
        for row in cursor.fetchall():
            row_id, since, until = row[0], row[1], row[2]
            values = tuple(row[3 : _WIDTH + 3])
            route = RouteVersion(values, row[_WIDTH + 3], row[_WIDTH + 4], row_id)
            order = (len(route.values[_PREFIX]), route.values[_PREFIX])
            if since <= low and (until is None or until > low):
                old.setdefault(order, {})[route.key] = route
            if since <= high and (until is None or until > high):
                new.setdefault(order, {})[route.key] = route
    for order in sorted(set(old) | set(new)):
        yield from _compare(old.get(order, {}), new.get(order, {}))


def differences(
    plan: RoutingPlan, old: int | None, new: int | None, *, using: str = "default"
) -> Iterator[DiffRow]:
    """Every route that differs from view `old` to view `new` (a version, or the draft)."""
    if old is not None and new is not None:
        if old == new:
            return iter(())
        if old < new:
            return _touched(plan.pk, old, new, using)
        return (_reverse(row) for row in _touched(plan.pk, new, old, using))
    if old is None and new is None:
        return iter(())
    if new is None:
        return _joined(plan.pk, old, using)
    return (_reverse(row) for row in _joined(plan.pk, new, using))


_SIDE_COLUMNS = ", ".join([*_NAMES, "target_ids", "targets"])
_KEY_NAMES = ("prefix", "caller_prefix", "caller_pattern", "schedule_id")
# A published row as one side of a comparison: its own id, then a route's values.
_PUBLISHED_SIDE = ", ".join(
    [
        "v.id",
        *("v.route_id" if n == "id" else f"v.{n}" for n in _NAMES),
        "v.target_ids",
        "v.targets",
    ]
)
_NOTHING_SIDE = ", ".join(["NULL"] * (len(_NAMES) + 2))


def _same_key(a: str, b: str) -> str:
    return " AND ".join(
        f"coalesce({a}.{n}, 0) = coalesce({b}.{n}, 0)"
        if n == "schedule_id"
        else f"{a}.{n} = {b}.{n}"
        for n in _KEY_NAMES
    )


def _joined(plan_id: int, version: int, using: str) -> Iterator[DiffRow]:
    """The differences from published `version` (0: nothing) to the draft, compared by
    the database (only the routes that differ come back): each draft route joined to
    its published row by key through the published table's index, then the published
    routes the draft no longer has."""
    connection = connections[using]
    draft, draft_params = loading.routes_query(connection.vendor, plan_id, None, ordered=False)
    differs = " OR ".join(
        f"d.{n} IS DISTINCT FROM v.{n}" for n in (*_NAMES[1:], "targets") if n not in _KEY_NAMES
    )
    in_version = "v.plan_id = %s AND v.since <= %s AND (v.until IS NULL OR v.until > %s)"
    sql = (
        f"WITH d({_SIDE_COLUMNS}) AS ({draft.replace('{where}', '')}) "  # noqa: S608
        f"SELECT d.*, {_PUBLISHED_SIDE}, length(d.prefix) AS o1, d.prefix AS o2 "
        f"FROM d LEFT JOIN routing_publishedroute v ON {in_version} AND {_same_key('v', 'd')} "
        f"WHERE v.id IS NULL OR {differs} "
        f"UNION ALL SELECT {_NOTHING_SIDE}, {_PUBLISHED_SIDE}, length(v.prefix), v.prefix "
        f"FROM routing_publishedroute v WHERE {in_version} AND NOT EXISTS ("
        "SELECT 1 FROM routing_dialprefix p WHERE p.plan_id = v.plan_id AND "
        f"{_same_key('p', 'v')}) ORDER BY o1, o2"
    )
    params = [*draft_params, plan_id, version, version, plan_id, version, version]
    width = _WIDTH + 2
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(5_000):
            for row in rows:
                new = old = None
                if row[0] is not None:
                    new = RouteVersion(tuple(row[:_WIDTH]), row[_WIDTH], row[_WIDTH + 1], row[0])
                if row[width] is not None:
                    values = tuple(row[width + 1 : width + 1 + _WIDTH])
                    old = RouteVersion(values, row[-4], row[-3], row[width])
                change = "added" if old is None else "removed" if new is None else "changed"
                yield DiffRow(change, old, new)


def _reverse(row: DiffRow) -> DiffRow:
    change = {"added": "removed", "removed": "added"}.get(row.change, row.change)
    return DiffRow(change, row.new, row.old)


def diff(
    plan: RoutingPlan,
    old: int | None,
    new: int | None,
    *,
    limit: int | None = 1000,
    using: str = "default",
) -> Diff:
    """How view `new` differs from view `old`: counts, and the first `limit` rows
    (None: all). Versions must be kept (check_kept)."""
    for version in (old, new):
        if version is not None:
            check_kept(plan, version, using=using)
    result = Diff(plan=plan, old=old, new=new)
    with transaction.atomic(using=using):  # one snapshot; a server-side cursor on PostgreSQL
        lift_statement_timeout(using)
        for row in differences(plan, old, new, using=using):
            setattr(result, row.change, getattr(result, row.change) + 1)
            if limit is None or len(result.rows) < limit:
                result.rows.append(row)
            else:
                result.truncated = True
    return result


def check_kept(plan: RoutingPlan, version: int, *, using: str = "default") -> PlanVersion:
    """The kept version `version` of the plan, or PublishRefused saying why not."""
    found = PlanVersion.objects.using(using).filter(plan=plan, number=version).first()
    if found is not None:
        return found
    numbers = PlanVersion.objects.using(using).filter(plan=plan).values_list("number", flat=True)
    if not numbers:
        raise PublishRefused(f"Plan {plan} has no published version yet.")
    oldest, latest = min(numbers), max(numbers)
    if 0 < version < oldest:
        raise PublishRefused(
            f"Version {version} of plan {plan} is past retention: the last "
            f"{settings.ROUTING_VERSIONS_KEEP} versions are kept ({oldest} to {latest})."
        )
    raise PublishRefused(f"Plan {plan} has no version {version} (kept: {oldest} to {latest}).")


# --- Publishing ---------------------------------------------------------------------


@dataclass
class Published:
    """What a publish or rollback did."""

    version: PlanVersion
    diff: Diff
    test_results: list = field(default_factory=list)


def _locked(plan: RoutingPlan, using: str) -> RoutingPlan:
    return RoutingPlan.objects.using(using).select_for_update().get(pk=plan.pk)


def _check_expected(plan: RoutingPlan, expected: int | None, using: str) -> None:
    """Refuse when someone published since the operator looked (their diff is stale)."""
    if expected is None or plan.published_version == expected:
        return
    latest = PlanVersion.objects.using(using).filter(plan=plan).order_by("-number").first()
    who = ""
    if latest is not None:
        when = timezone.localtime(latest.published_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        who = f" by {latest.published_by_name or 'someone'} at {when}"
    raise PublishRefused(
        f"Plan {plan} is at {label(plan.published_version)} now: it was published{who} "
        f"while you were looking at {label(expected)}. Review the differences again."
    )


def publish(
    plan: RoutingPlan,
    *,
    user=None,
    comment: str = "",
    expected: int | None = None,
    force: bool = False,
    using: str = "default",
) -> Published:
    """Publish the plan's draft as its next version, after its route tests.

    `expected` is the version the operator reviewed the draft against (refused if
    another was published since). Failing route tests refuse the publish unless
    `force` is given by a user with the force permission; it is then recorded.
    """
    started = time.monotonic()
    with transaction.atomic(using=using):
        lift_statement_timeout(using)
        plan = _locked(plan, using)
        _check_expected(plan, expected, using)
        results = route_tests.run_for_publish(plan, using=using)
        failed = [result for result in results if not result.passed]
        if failed:
            names_failed = ", ".join(result.test.name for result in failed)
            if not force:
                raise RouteTestsFailed(
                    f"{len(failed)} route test{'s' if len(failed) != 1 else ''} of plan {plan} "
                    f"failed against the draft ({names_failed}): fix the draft or the tests, "
                    "or force the publish.",
                    results,
                )
            if user is None or not user.has_perm("versions.force_publish_planversion"):
                raise PublishRefused(
                    f"Route tests failed ({names_failed}) and you may not force a publish: "
                    "ask a user with the 'Can publish although route tests fail' permission."
                )
        current = plan.published_version
        # The first publish compares the draft with nothing (version 0).
        rows = _Collected(differences(plan, current or 0, DRAFT, using=using))
        if not rows.total and current is not None:
            raise PublishRefused(
                f"Nothing to publish: the draft of plan {plan} is the same as version {current}."
            )
        version = _write(
            plan,
            rows,
            kind=PlanVersion.Kind.PUBLISH,
            source=None,
            user=user,
            comment=comment,
            using=using,
        )
        if failed:
            version.forced = True
            version.failed_tests = "\n".join(
                f"{result.test.name}: {result.message}" for result in failed
            )
        version.seconds = time.monotonic() - started
        version.save(using=using)
    return Published(
        version=version, diff=rows.diff(plan, current, version.number), test_results=results
    )


def rollback(
    plan: RoutingPlan,
    to: int,
    *,
    user=None,
    comment: str = "",
    expected: int | None = None,
    using: str = "default",
) -> Published:
    """Publish the routes of kept version `to` as the plan's next version.

    An emergency path: it does not wait for route tests (the next publish of the
    draft runs them), and it leaves the draft as it is.
    """
    started = time.monotonic()
    with transaction.atomic(using=using):
        lift_statement_timeout(using)
        plan = _locked(plan, using)
        _check_expected(plan, expected, using)
        current = plan.published_version
        if current is None:
            raise PublishRefused(f"Plan {plan} has no published version to roll back.")
        check_kept(plan, to, using=using)
        if to == current:
            raise PublishRefused(f"Plan {plan} is at version {to} already.")
        rows = _Collected(differences(plan, current, to, using=using))
        if not rows.total:
            raise PublishRefused(
                f"Nothing to roll back: version {to} of plan {plan} has the same routes as "
                f"version {current}."
            )
        version = _write(
            plan,
            rows,
            kind=PlanVersion.Kind.ROLLBACK,
            source=to,
            user=user,
            comment=comment or f"rollback to version {to}",
            using=using,
        )
        version.seconds = time.monotonic() - started
        version.save(using=using)
    return Published(version=version, diff=rows.diff(plan, current, version.number))


class _Collected:
    """What a publish needs of a diff, without holding a million rows: the published rows
    to close, the routes to insert, the changed prefixes (while few), counts, a sample."""

    SAMPLE = 1000

    def __init__(self, rows: Iterable[DiffRow]) -> None:
        self.close: list[int] = []
        self.fresh: list[int] = []
        self.prefixes: set[str] | None = set()
        self.counts = {"added": 0, "removed": 0, "changed": 0}
        self.sample: list[DiffRow] = []
        for row in rows:
            self.counts[row.change] += 1
            if row.old is not None:
                self.close.append(row.old.row_id)
            if row.new is not None:
                self.fresh.append(row.new.row_id)
            if self.prefixes is not None:
                self.prefixes.add(row.prefix)
                if len(self.prefixes) > PER_PREFIX_CHANGES:
                    self.prefixes = None  # too many: the plan is reloaded whole
            if len(self.sample) < self.SAMPLE:
                self.sample.append(row)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def diff(self, plan: RoutingPlan, old: int | None, new: int) -> Diff:
        return Diff(
            plan=plan,
            old=old,
            new=new,
            rows=self.sample,
            truncated=self.total > len(self.sample),
            **self.counts,
        )


def _write(
    plan: RoutingPlan,
    rows: _Collected,
    *,
    kind: str,
    source: int | None,
    user,
    comment: str,
    using: str,
) -> PlanVersion:
    """Write version N+1 from the rows that differ from version N (N: None at first)."""
    connection = connections[using]
    current = plan.published_version
    number = (current or 0) + 1
    close, fresh = rows.close, rows.fresh
    with connection.cursor() as cursor:
        for start in range(0, len(close), _CHUNK):
            chunk = close[start : start + _CHUNK]
            cursor.execute(
                "UPDATE routing_publishedroute SET until = %s "  # noqa: S608
                f"WHERE id IN ({', '.join(['%s'] * len(chunk))})",
                [number, *chunk],
            )
        if source is None:
            _insert_from_draft(cursor, connection.vendor, plan.pk, number, fresh)
        else:
            for start in range(0, len(fresh), _CHUNK):
                chunk = fresh[start : start + _CHUNK]
                cursor.execute(
                    f"INSERT INTO routing_publishedroute ({_INSERT_COLUMNS}) "  # noqa: S608
                    f"SELECT {_COPY_COLUMNS}, %s FROM routing_publishedroute p "
                    f"WHERE p.id IN ({', '.join(['%s'] * len(chunk))})",
                    [number, *chunk],
                )
    previous = (
        PlanVersion.objects.using(using).filter(plan=plan, number=current).first()
        if current is not None
        else None
    )
    counts = rows.counts
    version = PlanVersion.objects.using(using).create(
        plan=plan,
        number=number,
        kind=kind,
        source=source,
        published_by=user if user is not None and user.is_authenticated else None,
        published_by_name=user.get_username() if user is not None and user.is_authenticated else "",
        comment=comment,
        routes=(previous.routes if previous else 0) + counts["added"] - counts["removed"],
        **counts,
    )
    RoutingPlan.objects.using(using).filter(pk=plan.pk).update(published_version=number)
    plan.published_version = number
    if current is None or rows.prefixes is None:
        changes.record_change(
            changes.PUBLISHED, tenant_id=plan.tenant_id, key=str(plan.pk), using=using
        )
    else:
        changes.record_changes(
            changes.PUBLISHED,
            [f"{plan.pk}:{prefix}" for prefix in sorted(rows.prefixes)],
            tenant_id=plan.tenant_id,
            using=using,
        )
    prune(plan, number, using=using)
    return version


def _insert_from_draft(
    cursor, vendor: str, plan_id: int, number: int, route_ids: list[int]
) -> None:
    """Copy these draft routes, with their targets, into published rows of version `number`."""
    sql, params = loading.routes_query(vendor, plan_id, None)
    insert = (
        f"INSERT INTO routing_publishedroute ({_INSERT_COLUMNS}) "  # noqa: S608
        f"SELECT q.*, %s, %s FROM ({{query}}) q"
    )
    total = _count_draft(cursor, plan_id)
    if len(route_ids) == total:  # every route (a first publish, a whole new table)
        cursor.execute(
            insert.replace("{query}", sql.replace("{where}", "")), [plan_id, number, *params]
        )
        return
    for start in range(0, len(route_ids), _CHUNK):
        chunk = route_ids[start : start + _CHUNK]
        where = f"AND p.id IN ({', '.join(['%s'] * len(chunk))})"
        cursor.execute(
            insert.replace("{query}", sql.replace("{where}", where)),
            [plan_id, number, *params, *chunk],
        )


def _count_draft(cursor, plan_id: int) -> int:
    cursor.execute("SELECT COUNT(*) FROM routing_dialprefix WHERE plan_id = %s", [plan_id])
    return int(cursor.fetchone()[0])


def prune(plan: RoutingPlan, latest: int, *, using: str = "default") -> int:
    """Forget the versions beyond retention and the rows only they had; returns how many
    versions went."""
    oldest_kept = latest - settings.ROUTING_VERSIONS_KEEP + 1
    if oldest_kept <= 1:
        return 0
    gone, _ = PlanVersion.objects.using(using).filter(plan=plan, number__lt=oldest_kept).delete()
    PublishedRoute.objects.using(using).filter(plan=plan, until__lte=oldest_kept).delete()
    return gone


@dataclass
class Discarded:
    """What discarding a draft did: the routes rewritten, and targets that could not be."""

    diff: Diff
    skipped: list[str] = field(default_factory=list)


def discard_draft(plan: RoutingPlan, *, using: str = "default") -> Discarded:
    """Make the plan's draft the live version again (the draft's changes are lost).

    Only the routes that differ are rewritten, in one transaction. A route or target
    whose trunk or schedule was deleted since cannot come back (the live version
    never uses it either): it is left out and named.
    """
    with transaction.atomic(using=using):
        lift_statement_timeout(using)
        plan = _locked(plan, using)
        current = plan.published_version
        if current is None:
            raise PublishRefused(
                f"Plan {plan} is not staged: its saved routes are what calls use, so there "
                "is no draft to discard."
            )
        rows = _Collected(differences(plan, current, DRAFT, using=using))
        if not rows.total:
            raise PublishRefused(
                f"Nothing to discard: the draft of plan {plan} is the same as version {current}."
            )
        for start in range(0, len(rows.fresh), _CHUNK):
            chunk = rows.fresh[start : start + _CHUNK]
            DialPrefix.objects.using(using).filter(pk__in=chunk).delete()
        restore = _Restorer(plan, using)
        for start in range(0, len(rows.close), _CHUNK):
            chunk = rows.close[start : start + _CHUNK]
            for published in PublishedRoute.objects.using(using).filter(pk__in=chunk):
                restore(published)
    # The differences the draft had from the live version, now gone.
    return Discarded(diff=rows.diff(plan, current, DRAFT), skipped=restore.skipped)


class _Restorer:
    """Writes published routes back into a plan's draft, with their targets."""

    _COLUMNS = tuple(name for name in _NAMES if name not in ("id", "schedule_id"))

    def __init__(self, plan: RoutingPlan, using: str) -> None:
        self.plan, self.using = plan, using
        tenant = plan.tenant_id
        self.trunks = set(
            Trunk.objects.using(using)
            .filter(carrier__tenant_id=tenant)
            .values_list("pk", flat=True)
        )
        self.schedules = set(
            Schedule.objects.using(using).filter(tenant_id=tenant).values_list("pk", flat=True)
        )
        self.skipped: list[str] = []

    def __call__(self, published: PublishedRoute) -> None:
        schedule = published.schedule_id
        if schedule is not None and schedule not in self.schedules:
            self.skipped.append(f"route {published}: its schedule #{schedule} was deleted since")
            return
        route = DialPrefix.objects.using(self.using).create(
            tenant_id=self.plan.tenant_id,
            plan=self.plan,
            schedule_id=schedule,
            **{name: getattr(published, name) for name in self._COLUMNS},
        )
        for item in parse_profile(published.targets):
            trunk, target_schedule = item[_TRUNK_AT], item[_SCHEDULE_AT] or None
            gone = (
                f"trunk #{trunk}"
                if trunk not in self.trunks
                else f"schedule #{target_schedule}"
                if target_schedule is not None and target_schedule not in self.schedules
                else ""
            )
            if gone:
                self.skipped.append(f"route {route}: a target's {gone} was deleted since")
                continue
            RouteTarget.objects.using(self.using).create(
                prefix=route,
                trunk_id=trunk,
                priority=item[_PRIORITY_AT],
                weight=item[_WEIGHT_AT],
                schedule_id=target_schedule,
            )


# --- Reading for people -------------------------------------------------------------


def trunk_names(tenant_id: int, *, using: str = "default") -> dict[int, str]:
    """Trunk ids to "carrier/trunk" names, for describing targets."""
    return {
        pk: f"{carrier}/{name}"
        for pk, carrier, name in Trunk.objects.using(using)
        .filter(carrier__tenant_id=tenant_id)
        .values_list("pk", "carrier__name", "name")
    }


def describe_targets(route: RouteVersion | None, names_by_id: dict[int, str]) -> str:
    """A route's targets as an operator reads them: "A/t1 (1, 100) → B/t2 (2, 100)"."""
    if route is None:
        return ""
    if route.value("action") != "route":
        code = route.value("reject_code")
        return f"{route.value('action')} {code or ''}".strip()
    # In the order calls try them: by priority, the heavier weight first among equals.
    items = sorted(route.target_items(), key=lambda item: (item[1], -item[2]))
    parts = [
        f"{names_by_id.get(trunk, f'trunk #{trunk} (deleted)')} ({priority}, {weight})"
        for trunk, priority, weight in items
    ]
    return " → ".join(parts) or "(no targets)"
