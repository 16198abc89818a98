"""Change history, scoped by tenant: per-object history pages and the recent-changes list.

django-simple-history records every create, change and delete (who, when, the
row as it was). Its admin pages look objects up by id and, for a deleted object,
fall back to its last historical row without asking whose it was; so every history
query here goes through `scope_history()`, which follows the model's
`tenant_path` through the *historical* tables. That way a deleted trunk of a
deleted carrier still belongs to its tenant, and to no one else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
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
        return super().history_view_title(request, _Printable(obj))

    def render_history_view(self, request, template, context, **kwargs):
        if "object" in context:
            context["object"] = _Printable(context["object"])
        for record in context.get("page_obj") or ():
            record.history_object = _Printable(record.instance)
        return super().render_history_view(request, template, context, **kwargs)

    def _valid_pk_or_404(self, object_id) -> None:
        from django.contrib.admin.utils import unquote

        try:
            self.model._meta.pk.to_python(unquote(object_id))
        except ValidationError as exc:
            raise Http404("No such object.") from exc


class _Printable:
    """An object whose str() survives the deletion of its parent (a trunk's carrier).

    Trunk.__str__ names its carrier; for the history of a trunk deleted along with
    its carrier that raises, so print "trunk #12" instead and pass the rest through.
    """

    def __init__(self, obj: Model) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._obj, name)

    def __str__(self) -> str:
        try:
            return str(self._obj)
        except ObjectDoesNotExist:
            return f"{self._obj._meta.verbose_name} #{self._obj.pk}"


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
    cache: dict = {}
    changes = [
        _describe_import(record) if model is ImportRecord else _describe(record, model, cache)
        for record, model in page
    ]
    names = dict(
        Tenant.objects.filter(pk__in={c.tenant_id for c in changes}).values_list("pk", "name")
    )
    for change in changes:
        change.tenant_name = names.get(change.tenant_id, f"deleted tenant #{change.tenant_id}")
    return changes


def _describe(record, model: type[Model], cache: dict) -> Change:
    details: list[dict[str, Any]] = []
    if record.history_type == "~":
        previous = record.prev_record
        if previous is not None:
            delta = record.diff_against(previous, foreign_keys_are_objs=True)
            details = HistoricalRecordContextHelper(model, record).context_for_delta_changes(delta)
    return Change(
        when=record.history_date,
        who=str(record.history_user) if record.history_user else "(system)",
        kind=str(model._meta.verbose_name),
        label=_label(record),
        action=ACTIONS.get(record.history_type, record.history_type),
        tenant_id=_record_tenant_id(record, model, cache),
        changes=details,
        reason=record.history_change_reason or "",
        object_url=_object_url(record, model),
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


def _label(record) -> str:
    try:
        return str(record.instance)
    except ObjectDoesNotExist:  # its carrier or prefix has been deleted since
        return f"{record.instance._meta.verbose_name} #{record.id}"


def _record_tenant_id(record, model: type[Model], cache: dict) -> int | None:
    part, _, rest = model.tenant_path.partition("__")
    if part == "pk":
        return record.id
    value = getattr(record, f"{part}_id")
    while rest and value is not None:
        model = model._meta.get_field(part).related_model
        part, _, rest = rest.partition("__")
        key = (model, value, part)
        if key not in cache:
            cache[key] = (
                model.history.filter(id=value)
                .order_by("-history_date")
                .values_list(f"{part}_id", flat=True)
                .first()
            )
        value = cache[key]
    return value


def _admin_url(model: type[Model], view: str, object_id) -> str:
    if not admin.site.is_registered(model):
        return ""
    opts = model._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[object_id])
    except NoReverseMatch:
        return ""


def _object_url(record, model: type[Model]) -> str:
    """The change page of the object (a target's is its prefix's), if it still exists."""
    if model is RouteTarget:
        if DialPrefix.objects.filter(pk=record.prefix_id).exists():
            return _admin_url(DialPrefix, "change", record.prefix_id)
        return ""
    if record.history_type == "-" or not model.objects.filter(pk=record.id).exists():
        return ""
    return _admin_url(model, "change", record.id)


def kinds_choices() -> list[tuple[str, str]]:
    kinds = [(m._meta.model_name, str(m._meta.verbose_name_plural)) for m in TRACKED_MODELS]
    return [*kinds, (IMPORT_KIND, "imports")]
