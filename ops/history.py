"""Change history, scoped by tenant: per-object history pages and the recent-changes list.

django-simple-history records every create, change and delete (who, when, the
row as it was). Its admin pages look objects up by id and, for a deleted object,
fall back to its last historical row without asking whose it was; so every history
query here goes through `scope_history()`, which follows the model's
`tenant_path` through the *historical* tables. That way a deleted trunk of a
deleted carrier still belongs to its tenant, and to no one else.

Naming works the same way: before anything prints a historical object, its parents
are attached by `attach_parents()`, live or as their own history last left them, so
that trunk is still "Blue Line / bl-east", with a few queries per page, not per row.

A route's history page (`route_history()`, RouteHistoryMixin) is its prefix's and its
targets' changes together, and the CSV imports that wrote it. Imports write in bulk
without historical rows: each route written points to its ImportRecord
(DialPrefix.last_import, copied into every later historical row), and a replace
import rewrites or deletes every route of its plan; so the page places each such
import at its time, says what it changed when the route still is as the import left
it, and shows targets an import replaced as removed by it. An edit an import
overwrote is then never the latest entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import ForeignKey, Model, OuterRef, QuerySet, Subquery
from django.http import Http404
from django.urls import NoReverseMatch, reverse
from django.utils.text import capfirst

from ops.history_words import WordsContextHelper
from routing.models import Carrier, DialPrefix, ImportRecord, RouteTarget, Trunk
from tenants.models import Tenant, TenantSource
from tenants.scoping import EVERYTHING, scope_queryset, user_scope

# The models whose changes make up a tenant's route table, in the order an operator
# thinks of them.
TRACKED_MODELS: tuple[type[Model], ...] = (
    Tenant,
    TenantSource,
    Carrier,
    Trunk,
    DialPrefix,
    RouteTarget,
)


def tenant_filter(model: type[Model], tenant_id: int, path: str | None = None) -> dict[str, Any]:
    """Filter kwargs selecting `model`'s historical rows that belong to `tenant_id`.

    Follows `tenant_path` through the historical tables of the related models (not the
    live ones), so rows whose parent has been deleted since are still attributed.
    """
    part, _, rest = (path or model.tenant_path).partition("__")
    if part == "pk":
        return {"id": tenant_id}
    if not rest:
        return {f"{part}_id": tenant_id}
    related = model._meta.get_field(part).related_model
    parent_ids = related.history.filter(**tenant_filter(related, tenant_id, rest)).values("id")
    return {f"{part}_id__in": parent_ids}


def scope_history(queryset: QuerySet, model: type[Model], user) -> QuerySet:
    """Restrict a queryset of `model`'s historical rows to what `user` may see."""
    scope = user_scope(user)
    if scope is EVERYTHING:
        return queryset
    if scope is None:
        return queryset.none()
    return queryset.filter(**tenant_filter(model, scope.pk))


class TenantHistoryMixin:
    """For SimpleHistoryAdmin subclasses: history pages of other tenants' objects are 404.

    Put it before SimpleHistoryAdmin in the bases. It covers the history list, one
    historical version (and its revert form), live and deleted objects alike.
    """

    def get_history_queryset(self, request, history_manager, pk_name, object_id):
        # Not super()'s: it select_related()s the parent (carrier, prefix) with an inner
        # join, which hides the whole history of a trunk whose carrier was deleted.
        queryset = history_manager.filter(**{pk_name: object_id}).select_related("history_user")
        return scope_history(queryset, self.model, request.user)

    def history_view(self, request, object_id, extra_context=None):
        self._valid_pk_or_404(object_id)
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        self._valid_pk_or_404(object_id)
        history = scope_history(self.model.history.all(), self.model, request.user)
        try:
            visible = history.filter(id=object_id, history_id=version_id).exists()
        except (ValueError, ValidationError):
            visible = False
        if not visible:
            raise Http404("No such version.")
        return super().history_form_view(request, object_id, version_id, extra_context)

    def history_view_title(self, request, obj):
        # `obj` is also the page's "object": live, or rebuilt from its last historical row
        attach_parents([obj], self.model)
        return super().history_view_title(request, obj)

    def history_form_view_title(self, request, obj):
        attach_parents([obj], self.model)  # `obj` is the version, also the page's "original"
        return super().history_form_view_title(request, obj)

    def get_historical_record_context_helper(self, request, historical_record):
        return WordsContextHelper(self.model, historical_record)  # yes/no, not True/False

    def set_history_delta_changes(self, request, historical_records, foreign_keys_are_objs=True):
        # Called on the page's records before anything names them. Keep one instance per
        # record (`history_object` would build a new one on every access) and give
        # records and instances their parents, so that the "Object" column, the names in
        # the diffs and the title neither query per row nor fail on a deleted parent.
        records = list(historical_records)
        for record in records:
            record.history_object = record.instance
        attach_parents([*records, *(record.history_object for record in records)], self.model)
        super().set_history_delta_changes(request, historical_records, foreign_keys_are_objs)

    def _valid_pk_or_404(self, object_id) -> None:
        from django.contrib.admin.utils import unquote

        try:
            self.model._meta.pk.to_python(unquote(object_id))
        except ValidationError as exc:
            raise Http404("No such object.") from exc


# --- Naming historical objects ------------------------------------------------------


def attach_parents(objects: list, model: type[Model], cache: dict | None = None) -> None:
    """Give `objects` (instances or historical rows of `model`) their tracked parents.

    Each foreign key to a tracked model (a trunk's carrier, a target's prefix and trunk,
    a source's tenant) is set to the live parent or, once that has been deleted, to the
    parent as its last historical row left it; to None if there is no trace of it. So
    str() and diffs name a trunk of a deleted carrier "Blue Line / bl-east" without a
    query, and never raise. A few queries per model, whatever the number of objects;
    `cache` shares the parents already loaded between calls.
    """
    cache = {} if cache is None else cache
    for key in _parent_keys(model):
        parents = cache.setdefault(key.related_model, {})
        wanted = {getattr(obj, key.attname) for obj in objects} - {None} - parents.keys()
        if wanted:
            found = _load(key.related_model, wanted)
            parents.update(dict.fromkeys(wanted))
            parents.update(found)
            attach_parents(list(found.values()), key.related_model, cache)
        for obj in objects:
            parent_id = getattr(obj, key.attname)
            if parent_id is not None:
                # the field of that name: the model's, or its historical model's copy
                obj._meta.get_field(key.name).set_cached_value(obj, parents[parent_id])


def _parent_keys(model: type[Model]) -> list[ForeignKey]:
    return [
        f
        for f in model._meta.concrete_fields
        if isinstance(f, ForeignKey) and f.related_model in TRACKED_MODELS
    ]


def _load(model: type[Model], ids: set) -> dict[Any, Model]:
    """`model`'s objects by id: live ones, else rebuilt from their last historical row."""
    objects = model._default_manager.order_by().in_bulk(ids)
    if gone := ids - objects.keys():
        last = (
            model.history.filter(id=OuterRef("id"))
            .order_by("-history_date", "-history_id")
            .values("history_id")[:1]
        )
        for row in model.history.filter(id__in=gone, history_id=Subquery(last)):
            objects[row.id] = row.instance
    return objects


# --- The tenant-wide list ------------------------------------------------------------


@dataclass
class Change:
    """One line of the recent-changes list."""

    when: Any
    who: str
    kind: str
    label: str
    action: str
    tenant_id: int | None
    changes: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    object_url: str = ""
    history_url: str = ""
    tenant_name: str = ""
    anchor: str = ""  # the entry's id in a page, for links to it
    version_url: str = ""  # one historical version's page, when it has one


ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}
IMPORT_KIND = "import"
# Bookkeeping columns that are not a change of their own (shown as entries instead).
NOT_DIFFED: dict[type[Model], tuple[str, ...]] = {DialPrefix: ("last_import",)}
# How the historical rows of a route's parts name their prefix.
ROUTE_PARTS: dict[type[Model], str] = {DialPrefix: "id", RouteTarget: "prefix_id"}


def recent_changes(
    user,
    *,
    tenant_id: int | None = None,
    kinds: list[str] | None = None,
    prefix_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Change]:
    """The latest changes `user` may see across the tracked models, newest first.

    `prefix_id` narrows it to one route: the prefix and its targets. Each model
    contributes at most `offset + limit` rows (indexed on history_date), so the
    cost depends on the page, not on the size of the history.
    """
    rows = []
    for model in TRACKED_MODELS:
        if kinds and model._meta.model_name not in kinds:
            continue
        if prefix_id is not None and model not in ROUTE_PARTS:
            continue
        queryset = scope_history(model.history.all(), model, user)
        if tenant_id is not None:
            queryset = queryset.filter(**tenant_filter(model, tenant_id))
        if prefix_id is not None:
            queryset = queryset.filter(**{ROUTE_PARTS[model]: prefix_id})
        queryset = queryset.select_related("history_user").order_by("-history_date", "-pk")
        rows.extend((record, model) for record in queryset[: offset + limit])
    if prefix_id is None and (not kinds or IMPORT_KIND in kinds):
        # an import is one entry with its row counts
        queryset = scope_queryset(ImportRecord.objects.all(), user)
        if tenant_id is not None:
            queryset = queryset.filter(tenant_id=tenant_id)
        queryset = queryset.select_related("user").order_by("-created_at", "-pk")
        rows.extend((record, ImportRecord) for record in queryset[: offset + limit])
    rows.sort(key=lambda item: _when(item[0]), reverse=True)
    page = rows[offset : offset + limit]
    changes = _describe_page(page)
    names = dict(
        Tenant.objects.filter(pk__in={c.tenant_id for c in changes}).values_list("pk", "name")
    )
    for change in changes:
        change.tenant_name = names.get(change.tenant_id, f"deleted tenant #{change.tenant_id}")
    return changes


def _describe_page(page: list[tuple[Any, type[Model]]]) -> list[Change]:
    """The page's entries, in its order, with a few queries per model rather than per row."""
    described: dict[tuple[type[Model], Any], Change] = {}
    cache: dict = {}
    for model in dict.fromkeys(model for _, model in page):
        records = [record for record, kind in page if kind is model]
        if model is ImportRecord:
            described.update(((model, r.pk), _describe_import(r)) for r in records)
            continue
        previous = _previous_versions(model, records)
        instances = {record.pk: record.instance for record in records}
        attach_parents([*records, *previous.values(), *instances.values()], model, cache)
        if model is RouteTarget:  # a target's page is its prefix's
            live = _live_ids(DialPrefix, {record.prefix_id for record in records})
        else:
            live = _live_ids(model, {record.id for record in records})
        for record in records:
            described[model, record.pk] = _describe(
                record,
                model,
                instances[record.pk],
                previous=previous.get(record.pk),
                object_url=_object_url(record, model, live),
            )
    return [described[model, record.pk] for record, model in page]


def _previous_versions(model: type[Model], records: list) -> dict[Any, Any]:
    """The version before each changed record (what `prev_record` fetches one by one)."""
    changed = [record.pk for record in records if record.history_type == "~"]
    if not changed:
        return {}
    before = (
        model.history.filter(id=OuterRef("id"), history_date__lt=OuterRef("history_date"))
        .order_by("-history_date", "-history_id")
        .values("history_id")[:1]
    )
    pairs = dict(
        model.history.filter(history_id__in=changed)
        .annotate(previous=Subquery(before))
        .values_list("history_id", "previous")
    )
    rows = model.history.in_bulk({pk for pk in pairs.values() if pk is not None})
    return {later: rows[pk] for later, pk in pairs.items() if pk in rows}


def _describe(record, model: type[Model], instance: Model, *, previous, object_url: str) -> Change:
    details: list[dict[str, Any]] = []
    reason = record.history_change_reason or ""
    if record.history_type == "~" and previous is not None:
        delta = record.diff_against(
            previous, foreign_keys_are_objs=True, excluded_fields=NOT_DIFFED.get(model, ())
        )
        details = WordsContextHelper(model, record).context_for_delta_changes(delta)
        imported = getattr(record, "last_import_id", None)
        if imported and imported != previous.last_import_id:
            # the import wrote the route between the two versions, without a version
            reason = " ".join(
                filter(None, [reason, f"(these changes include those of import #{imported})"])
            )
    return Change(
        when=record.history_date,
        who=str(record.history_user) if record.history_user else "(system)",
        kind=str(model._meta.verbose_name),
        label=str(instance),
        action=ACTIONS.get(record.history_type, record.history_type),
        tenant_id=_tenant_id(instance),
        changes=details,
        reason=reason,
        object_url=object_url,
        history_url=_admin_url(model, "history", record.id),
    )


def _when(record):
    return getattr(record, "history_date", None) or record.created_at


def _describe_import(record) -> Change:
    mode = "replaced the table" if record.replace else "merged"
    counts = [
        {"field": "Rows in the file", "old": "", "new": record.rows},
        {"field": "Prefixes added", "old": "", "new": record.created},
        {"field": "Prefixes changed", "old": "", "new": record.updated},
        {"field": "Prefixes removed", "old": "", "new": record.deleted},
        {"field": "Targets written", "old": "", "new": record.targets},
    ]
    return Change(
        when=record.created_at,
        who=str(record.user) if record.user else "(system)",
        kind="import",
        label=record.source,
        action=f"imported ({mode})",
        tenant_id=record.tenant_id,
        changes=counts,
        reason=f"{record.seconds:.1f} s",
        anchor=f"import-{record.pk}",
    )


def _tenant_id(instance: Model) -> int | None:
    """The tenant of an instance whose parents are attached (see attach_parents)."""
    *parents, last = instance.tenant_path.split("__")
    current = instance
    try:
        for part in parents:
            current = getattr(current, part)
    except ObjectDoesNotExist:  # no trace of a parent
        return None
    return current.pk if last == "pk" else getattr(current, f"{last}_id")


def _live_ids(model: type[Model], ids: set) -> set:
    ids = ids - {None}
    if not ids:
        return set()
    return set(model._default_manager.filter(pk__in=ids).values_list("pk", flat=True))


def _admin_url(model: type[Model], view: str, object_id) -> str:
    if not admin.site.is_registered(model):
        return ""
    opts = model._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[object_id])
    except NoReverseMatch:
        return ""


def _object_url(record, model: type[Model], live: set) -> str:
    """The change page of the object (a target's is its prefix's), if it still exists.

    `live`: the ids among the page's objects (prefixes, for targets) that still exist.
    """
    if model is RouteTarget:
        if record.prefix_id in live:
            return _admin_url(DialPrefix, "change", record.prefix_id)
        return ""
    if record.history_type == "-" or record.id not in live:
        return ""
    return _admin_url(model, "change", record.id)


def kinds_choices() -> list[tuple[str, str]]:
    kinds = [(m._meta.model_name, str(m._meta.verbose_name_plural)) for m in TRACKED_MODELS]
    return [*kinds, (IMPORT_KIND, "imports")]


# --- One route's history ------------------------------------------------------------

ROUTE_HISTORY_LIMIT = 500  # entries of each kind on a route's page


def import_url(record: ImportRecord) -> str:
    """Where an import is described: its entry in the recent changes' import list."""
    return f"{reverse('ops:recent-changes')}?kind={IMPORT_KIND}#import-{record.pk}"


def import_words(record: ImportRecord) -> str:
    """'import #12 (table.csv, alice, 2026-11-30 02:10 UTC)'."""
    who = str(record.user) if record.user_id and record.user else "the command line"
    when = record.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"import #{record.pk} ({record.source}, {who}, {when})"


def route_history(user, prefix_id: int) -> tuple[Model, list[Change]] | None:
    """A route (live, or as its history last left it) and its life, newest first: its
    prefix's versions, its targets' (deleted targets included) and the imports that
    wrote it, interleaved by time. None when `user` may see no trace of it."""
    live = scope_queryset(DialPrefix.objects.filter(pk=prefix_id), user).first()
    own = list(
        scope_history(DialPrefix.history.filter(id=prefix_id), DialPrefix, user)
        .select_related("history_user")
        .order_by("-history_date", "-history_id")[:ROUTE_HISTORY_LIMIT]
    )
    if live is None and not own:
        return None
    targets = list(
        scope_history(RouteTarget.history.filter(prefix_id=prefix_id), RouteTarget, user)
        .select_related("history_user")
        .order_by("-history_date", "-history_id")[:ROUTE_HISTORY_LIMIT]
    )
    route = live if live is not None else own[0].instance
    imports = _imports_of(user, live, own)
    page = [(record, DialPrefix) for record in own] + [(r, RouteTarget) for r in targets]
    page.sort(key=lambda item: _when(item[0]), reverse=True)
    entries = _describe_page(page)
    for entry, (record, model) in zip(entries, page, strict=True):
        if model is DialPrefix:
            entry.version_url = _version_url(record)
    entries += _import_entries(imports, live, own, targets)
    entries += _removed_targets(imports, targets)
    if live is None and own and own[0].history_type != "-":
        gone = next((i for i in imports if i.replace and i.created_at > own[0].history_date), None)
        entries.append(
            Change(
                when=gone.created_at if gone else own[0].history_date,
                who=(str(gone.user) if gone and gone.user else "(system)"),
                kind="dial prefix",
                label=str(route),
                action="deleted",
                tenant_id=route.tenant_id,
                reason=(
                    f"removed by {import_words(gone)}: not in the file of a replace"
                    if gone
                    else "removed without a history entry"
                ),
                object_url=import_url(gone) if gone else "",
            )
        )
    # at one time (an import), the route's own entry before its targets'
    entries.sort(key=lambda c: (c.when, c.kind != RouteTarget._meta.verbose_name), reverse=True)
    return route, entries


def _imports_of(user, live: DialPrefix | None, own: list) -> list[ImportRecord]:
    """The imports that wrote the route, oldest first: those its rows point to, and every
    replace import of its plan since it was first seen (a replace rewrites or deletes
    every route of the plan)."""
    ids = {record.last_import_id for record in own}
    if live is not None:
        ids.add(live.last_import_id)
    ids.discard(None)
    plan_id = live.plan_id if live is not None else own[0].plan_id
    first_seen = own[-1].history_date if own else None
    replaces = ImportRecord.objects.filter(plan_id=plan_id, replace=True)
    if first_seen is not None:
        replaces = replaces.filter(created_at__gte=first_seen)
    elif live is not None and live.last_import_id:
        replaces = replaces.filter(pk__gte=live.last_import_id)
    else:
        replaces = replaces.none()
    if live is None and own:  # not after it was deleted
        replaces = replaces.filter(created_at__lte=_deleted_by(own, replaces))
    found = ImportRecord.objects.filter(pk__in=ids) | replaces
    return list(
        scope_queryset(found, user).select_related("user").order_by("created_at", "pk").distinct()
    )


def _deleted_by(own: list, replaces):
    """The time of the first replace import after the route's last version (it deleted it)."""
    if own[0].history_type == "-":
        return own[0].history_date
    first = replaces.filter(created_at__gt=own[0].history_date).order_by("created_at").first()
    return first.created_at if first else own[0].history_date


def _import_entries(
    imports: list[ImportRecord], live: DialPrefix | None, own: list, targets: list
) -> list[Change]:
    entries = []
    latest = own[0].history_date if own else None
    for record in imports:
        deleted_it = (  # a replace after the route's last version: see route_history
            live is None
            and own[0].history_type != "-"
            and record.replace
            and record.created_at > own[0].history_date
        )
        if deleted_it:
            continue
        details: list[dict[str, Any]] = []
        current = (
            live is not None
            and live.last_import_id == record.pk
            and (latest is None or record.created_at >= latest)
        )
        if current:
            details = _import_delta(live, own[0] if own else None, targets, record)
        note = (
            "the route is as this import left it"
            if current
            else "what it wrote is not kept: the next version shows the changes since"
        )
        entries.append(
            Change(
                when=record.created_at,
                who=str(record.user) if record.user else "(system)",
                kind="import",
                label=record.source,
                action=f"written by {import_words(record)}",
                tenant_id=record.tenant_id,
                changes=details,
                reason=("replaced the plan's table; " if record.replace else "") + note,
                object_url=import_url(record),
                anchor=f"import-{record.pk}",
            )
        )
    return entries


def _import_delta(live: DialPrefix, before, targets: list, record: ImportRecord) -> list[dict]:
    """What the import changed: the live route against its last version before it."""
    from routing.importing import WRITTEN_FIELDS

    details = []
    if before is not None:
        for name in WRITTEN_FIELDS:
            old, new = getattr(before, name), getattr(live, name)
            if old != new:
                label = DialPrefix._meta.get_field(name.removesuffix("_id")).verbose_name
                details.append({"field": capfirst(label), "old": old, "new": new})
    alive: dict[int, Any] = {}
    for row in sorted(targets, key=lambda r: (r.history_date, r.history_id)):
        if row.history_date <= record.created_at:
            alive[row.id] = None if row.history_type == "-" else row
    old_targets = [row.instance for row in alive.values() if row is not None]
    new_targets = list(live.targets.select_related("trunk__carrier").order_by("id"))
    attach_parents(old_targets, RouteTarget)
    if _target_words(old_targets) != _target_words(new_targets):
        details.append(
            {
                "field": "Targets",
                "old": _target_words(old_targets) or "none",
                "new": _target_words(new_targets) or "none",
            }
        )
    return details


def _target_words(targets: list) -> str:
    return ", ".join(
        f"{target.trunk} (priority {target.priority}, weight {target.weight})"
        for target in sorted(targets, key=lambda t: (t.priority, -t.weight, t.id))
    )


def _removed_targets(imports: list[ImportRecord], targets: list) -> list[Change]:
    """Targets whose history ends alive but that are gone: an import rewrote the route's
    targets (it deletes and writes them in bulk, without historical rows)."""
    last: dict[int, Any] = {}
    for row in targets:  # newest first
        last.setdefault(row.id, row)
    candidates = [row for row in last.values() if row.history_type != "-"]
    if not candidates:
        return []
    live = _live_ids(RouteTarget, {row.id for row in candidates})
    entries = []
    for row in candidates:
        if row.id in live:
            continue
        by = next((i for i in imports if i.created_at > row.history_date), None)
        instance = row.instance
        attach_parents([instance], RouteTarget)
        entries.append(
            Change(
                when=by.created_at if by else row.history_date,
                who=str(by.user) if by and by.user else "(system)",
                kind=str(RouteTarget._meta.verbose_name),
                label=str(instance),
                action="deleted",
                tenant_id=by.tenant_id if by else None,
                reason=f"replaced by {import_words(by)}"
                if by
                else "removed without a history entry",
                object_url=import_url(by) if by else "",
            )
        )
    return entries


def _version_url(record) -> str:
    try:
        return reverse(
            "admin:routing_dialprefix_simple_history", args=[record.id, record.history_id]
        )
    except NoReverseMatch:
        return ""


class RouteHistoryMixin:
    """For DialPrefixAdmin, before TenantHistoryMixin: the history page is the route's
    (route_history()), the prefix's and its targets' changes and the imports."""

    def history_view(self, request, object_id, extra_context=None):
        from django.contrib.admin.utils import unquote
        from django.core.exceptions import PermissionDenied
        from django.template.response import TemplateResponse

        try:
            prefix_id = int(unquote(object_id))
        except ValueError:
            raise Http404("No such object.") from None
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        found = route_history(request.user, prefix_id)
        if found is None:
            raise Http404("No such route.")
        route, entries = found
        attach_parents([route], DialPrefix)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Change history: {route}",
            "route": route,
            "changes": entries,
            "live": DialPrefix.objects.filter(pk=prefix_id).exists(),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/routing/dialprefix/route_history.html", context)
