"""Permissions of the API: Kamailio tokens, and model permissions for people."""

from __future__ import annotations

from rest_framework.permissions import BasePermission, DjangoModelPermissions

from api.models import KamailioToken


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
