"""The admin's "change many" pages: a trunk's routes (and moving them to another trunk),
and the bulk edit of the prefix list's filtered rows. Thin views over routing.bulk.

Both are two submits: Preview (counts, the first routes, nothing written) then Apply,
which carries the preview's fingerprint; routing.bulk refuses it when the routes
changed since, and the page shows the new preview instead.

The filtered rows are the change list's own queryset, built from the same query
string (filters, search) by a ChangeList, so the bulk edit and the export act on
exactly what the list shows, on all its pages, scoped like the list
(ops.admin.scoping).
"""

from __future__ import annotations

import copy

from django import forms
from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, QueryDict
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import ngettext

from routing import bulk
from routing.models import DialPrefix, RoutingMode, Trunk
from tenants.scoping import scope_queryset

ROUTES_SHOWN = 50  # routes listed on a trunk's page
IDS = "ids"  # the ticked rows, when the bulk edit comes from the action
OWN_PARAMS = {IDS, "plan"}  # query parameters of these pages, not the list's filters


# --- The list's filtered rows -----------------------------------------------------------


def list_filters(params: QueryDict) -> QueryDict:
    """The change list's parameters (filters, search, order) among `params`."""
    kept = params.copy()
    for name in OWN_PARAMS:
        kept.pop(name, None)
    return kept


def filtered_routes(modeladmin, request, params: QueryDict) -> QuerySet[DialPrefix]:
    """The rows the change list shows for `params` (all pages), and only the ticked
    ones among them when `params` names some (`ids`). ValidationError if not valid."""
    listing = copy.copy(request)
    listing.GET = list_filters(params)
    try:
        routes = modeladmin.get_changelist_instance(listing).queryset
    except IncorrectLookupParameters:
        raise ValidationError("The list's filters are not valid: go back to the list.") from None
    if params.get(IDS):
        try:
            ids = [int(pk) for pk in params[IDS].split(",")]
        except ValueError:
            raise ValidationError("The ticked rows are not valid: tick them again.") from None
        routes = routes.filter(pk__in=ids)
    return routes


def describe_filters(params: QueryDict) -> str:
    """The list's filters in words, for the pages' headings."""
    filters = list_filters(params)
    filters.pop("o", None)
    filters.pop("p", None)
    search = filters.pop("q", [""])[0]
    words = [f"search “{search}”"] if search else []
    words += [f"{name} = {value}" for name, value in filters.items()]
    return ", ".join(words)


# --- The trunk page ---------------------------------------------------------------------


class TrunkMoveForm(forms.Form):
    new_trunk = forms.ModelChoiceField(queryset=Trunk.objects.none(), label="Other trunk")
    mode = forms.ChoiceField(
        choices=[
            (bulk.REPLACE, "Replace this trunk by the other on its routes"),
            (bulk.FAILOVER, "Add the other trunk as failover, right after this one"),
        ],
        initial=bulk.REPLACE,
        widget=forms.RadioSelect,
        label="What to do",
    )
    fingerprint = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, trunk: Trunk, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.extra_kwargs = {"trunk": trunk, "user": user}
        others = Trunk.objects.filter(carrier__tenant_id=trunk.carrier.tenant_id).exclude(
            pk=trunk.pk
        )
        self.fields["new_trunk"].queryset = scope_queryset(
            others.select_related("carrier").order_by("carrier__name", "name"), user
        )


class TrunkRoutesMixin:
    """For TrunkAdmin: the routes that use the trunk on its change form, and its
    "replace this trunk" page."""

    def get_urls(self):
        return [
            path(
                "<path:object_id>/replace/",
                self.admin_site.admin_view(self.replace_view),
                name="routing_trunk_replace",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        trunk = self.get_object(request, unquote(object_id)) if object_id else None
        if trunk is not None:
            routes = scope_queryset(bulk.routes_using(trunk), request.user).order_by("prefix")
            extra_context = {
                **(extra_context or {}),
                "trunk_routes": list(routes.select_related("tenant")[:ROUTES_SHOWN]),
                "trunk_route_count": routes.count(),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def replace_view(self, request, object_id: str):
        trunk = self.get_object(request, unquote(object_id))  # scoped: another tenant's is None
        if trunk is None:
            raise Http404("No such trunk.")
        if not self.has_change_permission(request, trunk):
            raise PermissionDenied
        form = TrunkMoveForm(request.POST or None, trunk=trunk, user=request.user)
        preview = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            arguments = {
                "user": request.user,
                "trunk": trunk,
                "new_trunk": data["new_trunk"],
                "mode": data["mode"],
            }
            try:
                if "_apply" in request.POST:
                    done = bulk.move_trunk(**arguments, expected=data["fingerprint"])
                    self.message_user(request, moved_message(done, trunk, data), messages.SUCCESS)
                    return redirect(reverse("admin:routing_trunk_change", args=[trunk.pk]))
                preview = bulk.preview_trunk_move(**arguments)
            except bulk.StalePreview as exc:
                self.message_user(request, str(exc), messages.ERROR)
                preview = bulk.preview_trunk_move(**arguments)
            except ValidationError as exc:
                form.add_error(None, exc)
            if preview is not None:
                form = _with_fingerprint(form, preview)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": trunk,
            "title": f"Replace trunk {trunk}",
            "form": form,
            "preview": preview,
            "route_count": bulk.routes_using(trunk).count(),
        }
        return TemplateResponse(request, "admin/routing/trunk/replace.html", context)


def moved_message(done: bulk.Preview, trunk: Trunk, data: dict) -> str:
    what = (
        f"replaced {trunk} by {data['new_trunk']}"
        if data["mode"] == bulk.REPLACE
        else f"added {data['new_trunk']} as failover after {trunk}"
    )
    routes = ngettext("on %(count)d route", "on %(count)d routes", done.count) % {
        "count": done.count
    }
    return f"{what[0].upper()}{what[1:]} {routes}{_draft_words(done)}."


def _draft_words(done: bulk.Preview) -> str:
    if not done.staged_plans:
        return ""
    return f" (the draft of staged plan {', '.join(done.staged_plans)}: publish it to make it live)"


def _with_fingerprint(form: forms.Form, preview: bulk.Preview) -> forms.Form:
    """The same form, bound to the same values, carrying the preview's fingerprint."""
    data = form.data.copy()
    data["fingerprint"] = preview.fingerprint
    bound = type(form)(data, **form.extra_kwargs)
    bound.is_valid()
    return bound


# --- Bulk edit of the prefix list's filtered rows ---------------------------------------

ACTIVE_CHOICES = [("", "leave as it is"), ("yes", "Active"), ("no", "Inactive")]
TARGET_CHOICES = [
    ("", "leave the targets as they are"),
    (bulk.TARGET_ADD, "Add the trunk as a target (routes that have it keep theirs)"),
    (bulk.TARGET_REMOVE, "Remove the trunk from the targets"),
    (bulk.TARGET_SET, "Set the priority and/or weight of the trunk's target"),
]


class RouteEditForm(forms.Form):
    is_active = forms.ChoiceField(choices=ACTIVE_CHOICES, required=False, label="Active")
    routing_mode = forms.ChoiceField(
        choices=[("", "leave as it is"), *RoutingMode.choices],
        required=False,
        label="Routing mode",
    )
    target = forms.ChoiceField(choices=TARGET_CHOICES, required=False, label="Target")
    trunk = forms.ModelChoiceField(queryset=Trunk.objects.none(), required=False, label="Trunk")
    priority = forms.IntegerField(min_value=0, max_value=32767, required=False)
    weight = forms.IntegerField(min_value=1, max_value=32767, required=False)
    fingerprint = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.extra_kwargs = {"user": user}
        trunks = Trunk.objects.select_related("carrier__tenant").order_by("carrier__name", "name")
        self.fields["trunk"].queryset = scope_queryset(trunks, user)

    def edit(self) -> bulk.RouteEdit:
        data = self.cleaned_data
        return bulk.RouteEdit(
            is_active={"yes": True, "no": False}.get(data["is_active"]),
            routing_mode=data["routing_mode"] or None,
            trunk=data["trunk"],
            target=data["target"],
            priority=data["priority"],
            weight=data["weight"],
        )


class RouteBulkEditMixin:
    """For DialPrefixAdmin: the bulk-edit page, its action for the ticked rows, and the
    link (in its change_list.html) for every filtered row."""

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "bulk-edit/",
                self.admin_site.admin_view(self.bulk_edit_view),
                name="{}_{}_bulk_edit".format(*info),
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "has_change_permission": self.has_change_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def bulk_edit_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = RouteEditForm(request.POST or None, user=request.user)
        preview, problem = None, ""
        try:
            routes = filtered_routes(self, request, request.GET)
        except ValidationError as exc:
            routes, problem = None, " ".join(exc.messages)
        if routes is not None and request.method == "POST" and form.is_valid():
            edit = form.edit()
            try:
                if "_apply" in request.POST:
                    done = bulk.apply_edit(
                        user=request.user,
                        routes=routes,
                        edit=edit,
                        expected=form.cleaned_data["fingerprint"],
                    )
                    self.message_user(request, edited_message(done), messages.SUCCESS)
                    changelist = reverse("admin:routing_dialprefix_changelist")
                    query = list_filters(request.GET).urlencode()
                    return redirect(f"{changelist}?{query}" if query else changelist)
                preview = bulk.preview_edit(user=request.user, routes=routes, edit=edit)
            except bulk.StalePreview as exc:
                self.message_user(request, str(exc), messages.ERROR)
                preview = bulk.preview_edit(user=request.user, routes=routes, edit=edit)
            except ValidationError as exc:
                form.add_error(None, exc)
            if preview is not None:
                form = _with_fingerprint(form, preview)
        filters = describe_filters(request.GET)
        ticked = len(request.GET[IDS].split(",")) if request.GET.get(IDS) else 0
        changelist = reverse("admin:routing_dialprefix_changelist")
        query = list_filters(request.GET).urlencode()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Bulk edit of dial prefixes",
            "form": form,
            "preview": preview,
            "problem": problem,
            "filters": filters,
            "ticked": ticked,
            "changelist_url": f"{changelist}?{query}" if query else changelist,
        }
        return TemplateResponse(request, "admin/routing/dialprefix/bulk_edit.html", context)


def edited_message(done: bulk.Preview) -> str:
    changed = ngettext("Changed %(count)d route", "Changed %(count)d routes", done.count) % {
        "count": done.count
    }
    return f"{changed} of {done.selected}{_draft_words(done)}."


def bulk_edit_action(modeladmin, request, queryset):
    """The action: to the bulk-edit page with the list's filters and the ticked rows
    ("select all" across pages: every filtered row)."""
    params = list_filters(request.GET)
    if request.POST.get("select_across") not in ("1", "True"):
        params[IDS] = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
    return redirect(f"{reverse('admin:routing_dialprefix_bulk_edit')}?{params.urlencode()}")


bulk_edit_action.short_description = "Bulk edit the selected routes (preview first)"
bulk_edit_action.allowed_permissions = ("change",)
