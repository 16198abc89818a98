"""The admin side of tenant scoping: every tenant-owned admin and inline uses this.

It applies tenants.scoping to the change list, the change form, the choices of
every foreign key (so a forged POST naming another tenant's row fails validation
like any invalid choice), the tenant field itself (fixed to the user's tenant),
list filters and autocomplete (which reuses the scoped get_queryset).
"""

from __future__ import annotations

from django.contrib import admin

from tenants.models import Tenant
from tenants.scoping import EVERYTHING, is_tenant_scoped, scope_queryset, user_scope


def _own_tenant(request) -> Tenant | None:
    scope = user_scope(request.user)
    return scope if isinstance(scope, Tenant) else None


class TenantScopedMixin:
    """For ModelAdmin and InlineModelAdmin classes of tenant-owned models."""

    def get_queryset(self, request):
        return scope_queryset(super().get_queryset(request), request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        own = _own_tenant(request)
        if related is Tenant and own is not None:
            kwargs["queryset"] = Tenant.objects.filter(pk=own.pk)
            kwargs["disabled"] = True
        elif is_tenant_scoped(related):
            queryset = kwargs.get("queryset") or related._default_manager.all()
            if hasattr(related, "carrier"):
                queryset = queryset.select_related("carrier")
            kwargs["queryset"] = scope_queryset(queryset, request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        own = _own_tenant(request)
        if own is None or "tenant" not in form.base_fields:
            return form

        class OwnTenantForm(form):
            """Starts new objects in the user's tenant: the disabled field keeps it."""

            def __init__(self, *args, **form_kwargs):
                if form_kwargs.get("instance") is None:
                    form_kwargs["instance"] = self._meta.model(tenant=own)
                super().__init__(*args, **form_kwargs)

        OwnTenantForm.__name__ = form.__name__
        return OwnTenantForm

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if user_scope(request.user) is EVERYTHING:
            return filters
        return [f for f in filters if not _names_tenant(f)]

    def get_list_display(self, request):
        columns = super().get_list_display(request)
        if user_scope(request.user) is EVERYTHING:
            return columns
        return [c for c in columns if c != "tenant"]


def _names_tenant(list_filter) -> bool:
    name = list_filter[0] if isinstance(list_filter, tuple | list) else list_filter
    return isinstance(name, str) and (name == "tenant" or name.endswith("__tenant"))


class TenantScopedAdmin(TenantScopedMixin, admin.ModelAdmin):
    pass
