"""The permission set of a tenant's operators, kept in one group."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

OPERATOR_GROUP = "Tenant operators"

# (app label, model, actions): operators edit their route table and read the rest.
_OPERATOR_PERMISSIONS = [
    ("routing", "carrier", ("view", "add", "change", "delete")),
    ("routing", "trunk", ("view", "add", "change", "delete")),
    ("routing", "dialprefix", ("view", "add", "change", "delete")),
    ("routing", "routetarget", ("view", "add", "change", "delete")),
    ("routing", "routingplan", ("view", "add", "change", "delete")),
    ("routing", "customer", ("view", "add", "change", "delete")),
    ("routing", "customersource", ("view", "add", "change", "delete")),
    ("routing", "schedule", ("view", "add", "change", "delete")),
    ("rating", "ratedeck", ("view", "add", "change", "delete")),
    ("rating", "rate", ("view",)),
    ("blocklists", "blocklist", ("view", "add", "change", "delete")),
    ("blocklists", "blocklistentry", ("view", "add", "change", "delete")),
    # Operators publish and roll back their plans; forcing a publish past failing route
    # tests ("force_publish_planversion") is for the users a tenant trusts with it.
    ("versions", "planversion", ("view", "publish")),
    ("versions", "routetest", ("view", "add", "change", "delete")),
    ("versions", "decisionsample", ("view",)),
    ("tenants", "tenant", ("view",)),
    ("tenants", "tenantsource", ("view",)),
]


def refresh_operator_group(**kwargs) -> None:
    """After migrate: an existing operator group gains the permissions of new models."""
    if Group.objects.filter(name=OPERATOR_GROUP).exists():
        operator_group()


def operator_group() -> Group:
    """The "Tenant operators" group with its permissions, created or brought up to date."""
    group, _ = Group.objects.get_or_create(name=OPERATOR_GROUP)
    wanted = [
        f"{action}_{model}" for _, model, actions in _OPERATOR_PERMISSIONS for action in actions
    ]
    labels = {app for app, _, _ in _OPERATOR_PERMISSIONS}
    perms = Permission.objects.filter(content_type__app_label__in=labels, codename__in=wanted)
    group.permissions.set(perms)
    return group
