"""Tenants, the networks their calls come from, and the users who operate them."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, Group
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from simple_history import register
from simple_history.models import HistoricalRecords

from tenants.fields import NetworkField


class Tenant(models.Model):
    """A customer of the platform (an ITSP, a PBX host, a wholesale customer).

    Every routing row belongs to exactly one tenant, and nothing of one tenant is
    ever shown to, or used for, another.
    """

    name = models.CharField(max_length=100, help_text="Name shown to operators.")
    slug = models.SlugField(
        max_length=50,
        help_text="Short stable identifier, used by the API, the CLI and the EVAPI bridge.",
    )
    is_active = models.BooleanField(
        default=True,
        help_text="An inactive tenant's calls are refused with 403; its data is kept.",
    )
    description = models.TextField(blank=True)

    history = HistoricalRecords()

    # Path from this model to its tenant, used by tenants.scoping (the model is its own).
    tenant_path = "pk"

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["slug"],
                name="tenant_slug_unique",
                violation_error_message="A tenant with this slug already exists.",
            ),
            models.UniqueConstraint(
                fields=["name"],
                name="tenant_name_unique",
                violation_error_message="A tenant with this name already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TenantSource(models.Model):
    """A network from which a tenant's calls arrive (its PBXs, SBCs, customers).

    The most specific network that contains a call's source IP names the tenant.
    A network belongs to one tenant only, so a source is never ambiguous; there is
    no wildcard and an unknown source is refused.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="sources")
    network = NetworkField(
        help_text="IPv4 or IPv6 network in CIDR form (192.0.2.0/24, 2001:db8::/48), "
        "or a single address.",
    )
    description = models.CharField(max_length=200, blank=True)

    history = HistoricalRecords()

    tenant_path = "tenant"

    class Meta:
        ordering = ["tenant__name", "network"]
        constraints = [
            models.UniqueConstraint(
                fields=["network"],
                name="tenantsource_network_unique",
                violation_error_message="This network already names a tenant; "
                "a network can belong to one tenant only.",
            ),
        ]

    def __str__(self) -> str:
        # Never raises: a historical source may name a tenant deleted since.
        try:
            return f"{self.network} ({self.tenant})"
        except ObjectDoesNotExist:
            return f"{self.network} (deleted tenant)" if self.tenant_id else str(self.network)


class User(AbstractUser):
    """A person who signs in to the admin or the API.

    A user with a tenant operates that tenant's route table only; a superuser
    operates every tenant. A staff user with neither sees nothing.
    """

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="users",
        help_text="The tenant this user operates. Leave empty for platform superusers.",
    )

    # Who created, changed (tenant, flags, groups, permissions) or deleted a user.
    # Not the password hash (a secret) nor last_login (every login would be a change).
    history = HistoricalRecords(
        excluded_fields=["password", "last_login"], m2m_fields=["groups", "user_permissions"]
    )

    def __str__(self) -> str:
        return self.get_username()

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and set(update_fields) <= {"last_login"}:
            # A login (django.contrib.auth's update_last_login): not a change to record.
            self.skip_history_when_saving = True
            try:
                super().save(*args, **kwargs)
            finally:
                del self.skip_history_when_saving
            return
        super().save(*args, **kwargs)


# Groups carry the permissions (e.g. "Tenant operators"): their changes are recorded
# too, in this app's tables.
register(Group, app="tenants", m2m_fields=["permissions"])
