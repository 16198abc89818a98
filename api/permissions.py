"""Permissions of the API: Kamailio tokens, and model permissions for people."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission, DjangoModelPermissions

from api.models import KamailioToken
from tenants.scoping import user_scope


class HasKamailioToken(BasePermission):
    """A request authenticated by KamailioTokenAuthentication (which checks networks)."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, KamailioToken)


class ModelPermissions(DjangoModelPermissions):
    """Django's model permissions, including `view` for reads (DRF's default skips it)."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class SuperuserWrites(BasePermission):
    """Reads for whoever may read; writes for superusers only (tenants and their networks)."""

    message = "Only a platform superuser can change tenants and their source networks."

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or request.user.is_superuser


class HasTenantScope(BasePermission):
    """A superuser, or a user who operates a tenant."""

    message = "Your account operates no tenant."

    def has_permission(self, request, view) -> bool:
        return user_scope(request.user) is not None
