"""Tenant scoping: the one place that decides which rows a user may see and use.

Every tenant-owned model names the path to its tenant in `tenant_path`
("tenant", "carrier__tenant", "pk" for Tenant itself). The admin, the REST API
and the simulator filter through `scope_queryset`, so a rule changes here or
nowhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Model, QuerySet

if TYPE_CHECKING:
    from tenants.models import Tenant


class Everything:
    """Marker for a user who may see every tenant (a superuser)."""

    def __repr__(self) -> str:
        return "EVERYTHING"


EVERYTHING = Everything()


def user_scope(user) -> Tenant | Everything | None:
    """The tenant `user` operates, EVERYTHING for a superuser, or None for no access."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return EVERYTHING
    return getattr(user, "tenant", None)


def is_tenant_scoped(model: type[Model]) -> bool:
    return hasattr(model, "tenant_path")


def scope_queryset(queryset: QuerySet, user) -> QuerySet:
    """Restrict `queryset` to the rows `user` may see (unchanged for superusers)."""
    scope = user_scope(user)
    if scope is EVERYTHING:
        return queryset
    if scope is None:
        return queryset.none()
    return queryset.filter(**{queryset.model.tenant_path: scope.pk})


def tenant_of(obj: Model) -> Tenant | None:
    """The tenant a tenant-scoped object belongs to (None while it has none yet)."""
    current = obj
    for part in obj.tenant_path.split("__"):
        if part == "pk":
            return current
        if getattr(current, f"{part}_id", None) is None:
            return None
        current = getattr(current, part)
    return current


def can_access(user, obj: Model) -> bool:
    """Whether `user` may see `obj` (a tenant-scoped instance)."""
    scope = user_scope(user)
    if scope is EVERYTHING:
        return True
    return scope is not None and tenant_of(obj) == scope
