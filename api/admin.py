"""Admin for Kamailio tokens and users' API tokens (superusers only), with their history.

A Kamailio token's key is shown once, in a message, when it is created (or
re-issued); only its digest is stored, so it cannot be shown again. Users' API
tokens come from logging in to the API; here they can be seen and revoked.
"""

from __future__ import annotations

from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from api.models import KamailioToken, UserToken


class SuperuserOnly:
    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request, *args):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_delete_permission(self, request, obj=None):
        return self.has_module_permission(request)


def _show_key(modeladmin, request, token: KamailioToken, key: str) -> None:
    modeladmin.message_user(
        request,
        f"The key of {token.name} is {key} — copy it now into Kamailio's config "
        "(Authorization: Token ...); it is not stored and will not be shown again.",
        messages.WARNING,
    )


@admin.action(description="Issue a new key (the old one stops working)")
def reissue_key(modeladmin, request, queryset):
    for token in queryset:
        key = token.set_new_key()
        token._change_reason = "New key issued"
        token.save(update_fields=["key_digest"])
        _show_key(modeladmin, request, token, key)


@admin.register(KamailioToken)
class KamailioTokenAdmin(SuperuserOnly, SimpleHistoryAdmin):
    list_display = ["name", "network_list", "is_active", "last_used_at", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "allowed_networks"]
    fields = ["name", "allowed_networks", "is_active", "created_at", "last_used_at"]
    readonly_fields = ["created_at", "last_used_at"]
    actions = [reissue_key]

    @admin.display(description="Allowed networks")
    def network_list(self, obj: KamailioToken) -> str:
        return ", ".join(obj.networks) or "any"

    def save_model(self, request, obj: KamailioToken, form, change: bool) -> None:
        key = None if change else obj.set_new_key()
        super().save_model(request, obj, form, change)
        if key is not None:
            _show_key(self, request, obj, key)


@admin.register(UserToken)
class UserTokenAdmin(SuperuserOnly, SimpleHistoryAdmin):
    """Who holds API tokens, until when; deleting one revokes it at once."""

    list_display = ["user", "created_at", "expires_at", "last_used_at"]
    list_filter = ["expires_at"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    fields = ["user", "created_at", "expires_at", "last_used_at"]
    readonly_fields = fields

    def has_add_permission(self, request, *args):
        # A key is handed to the person who logs in (POST /api/v1/auth/token), never
        # made on someone's behalf.
        return False
