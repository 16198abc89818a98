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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import ForeignKey, Model, OuterRef, QuerySet, Subquery
from django.http import Http404
from django.urls import NoReverseMatch, reverse
from simple_history.template_utils import HistoricalRecordContextHelper

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


ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}
IMPORT_KIND = "import"
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
    if record.history_type == "~" and previous is not None:
        delta = record.diff_against(previous, foreign_keys_are_objs=True)
        details = HistoricalRecordContextHelper(model, record).context_for_delta_changes(delta)
    return Change(
        when=record.history_date,
        who=str(record.history_user) if record.history_user else "(system)",
        kind=str(model._meta.verbose_name),
        label=str(instance),
        action=ACTIONS.get(record.history_type, record.history_type),
        tenant_id=_tenant_id(instance),
        changes=details,
        reason=record.history_change_reason or "",
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
