"""Admin for tenants, their source networks and users.

Source networks decide which tenant a call belongs to, so only superusers edit
them; a tenant's operators may look at their own.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from simple_history.admin import SimpleHistoryAdmin

from ops.admin.help import OperatorHelpMixin
from ops.admin.scoping import TenantScopedMixin
from ops.admin.writes import ServiceWritesMixin
from ops.history import TenantHistoryMixin
from tenants.models import Tenant, TenantSource, User


class SuperuserEditsOnly:
    def has_add_permission(self, request, *args):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class TenantSourceInline(
    OperatorHelpMixin, SuperuserEditsOnly, TenantScopedMixin, admin.TabularInline
):
    model = TenantSource
    extra = 0


class PlatformAdmin(
    ServiceWritesMixin,
    SuperuserEditsOnly,
    OperatorHelpMixin,
    TenantScopedMixin,
    TenantHistoryMixin,
    SimpleHistoryAdmin,
):
    """Rows that decide whose calls are whose: superusers edit, operators look."""


@admin.register(Tenant)
class TenantAdmin(PlatformAdmin):
    list_display = ["name", "slug", "is_active", "source_list"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [TenantSourceInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("sources")

    @admin.display(description="Source networks")
    def source_list(self, obj: Tenant) -> str:
        return ", ".join(source.network for source in obj.sources.all()) or "—"


@admin.register(TenantSource)
class TenantSourceAdmin(PlatformAdmin):
    list_display = ["network", "tenant", "description"]
    list_filter = ["tenant"]
    search_fields = ["network", "description", "tenant__name"]
    list_select_related = ["tenant"]


@admin.register(User)
class UserAdmin(SimpleHistoryAdmin, DjangoUserAdmin):
    """Superusers manage users; every change is in the history (never the password hash)."""

    list_display = ["username", "email", "tenant", "is_staff", "is_superuser", "is_active"]
    list_filter = ["tenant", "is_staff", "is_superuser", "is_active"]
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Tenant", {"fields": ["tenant"]}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Tenant", {"fields": ["tenant"]}),
    )

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(SimpleHistoryAdmin, DjangoGroupAdmin):
    """Groups (and so permissions) with their change history."""
