"""Tokens, stored only as digests: Kamailio's for the routing endpoint, users' for the API."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from ipaddress import ip_network

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from tenants.networks import NetworkError, parse_address, parse_network

# last_used_at is a hint for operators, not an audit log: writing it on every call
# would put a write on the call-setup path, so it is refreshed at most this often.
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored for `key` (keys are random, so no salt is needed)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def parse_networks(text: str) -> list[str]:
    """Normalised networks from `text` (separated by commas, spaces or lines)."""
    networks, errors = [], []
    for item in text.replace(",", " ").split():
        try:
            networks.append(parse_network(item))
        except NetworkError as exc:
            errors.append(str(exc))
    if errors:
        raise ValidationError(errors)
    return networks


class KamailioToken(models.Model):
    """A credential Kamailio sends with each routing request (`Authorization: Token ...`).

    Only the SHA-256 digest of the key is stored; the key is shown once, when the
    token is created. A token may be limited to the networks its Kamailio servers
    connect from.
    """

    name = models.CharField(
        max_length=100, help_text="Which Kamailio (or cluster) uses this token."
    )
    key_digest = models.CharField(max_length=64, editable=False)
    allowed_networks = models.TextField(
        blank=True,
        help_text="Networks the HTTP client (Kamailio) may connect from, one per line "
        "(192.0.2.10, 10.0.0.0/8, 2001:db8::/32). Empty allows any address.",
    )
    is_active = models.BooleanField(
        default=True, help_text="Untick to refuse this token at once (401)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Last authenticated request, to the minute.",
    )

    # Who created, restricted, re-keyed or deleted it; never the digest.
    history = HistoricalRecords(excluded_fields=["key_digest", "last_used_at"])

    class Meta:
        verbose_name = "Kamailio token"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                name="kamailiotoken_name_unique",
                violation_error_message="A Kamailio token with this name already exists.",
            ),
            models.UniqueConstraint(fields=["key_digest"], name="kamailiotoken_key_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            self.allowed_networks = "\n".join(parse_networks(self.allowed_networks))
        except ValidationError as exc:
            raise ValidationError({"allowed_networks": exc.messages}) from None

    def set_new_key(self) -> str:
        """Give the token a fresh random key; returns the key, which is not stored."""
        key = secrets.token_urlsafe(32)
        self.key_digest = hash_key(key)
        return key

    @property
    def networks(self) -> list[str]:
        return self.allowed_networks.split()

    def allows_address(self, address: str | None) -> bool:
        """Whether a request from `address` may use this token."""
        networks = self.networks
        if not networks:
            return True
        try:
            ip = parse_address(address or "")
        except NetworkError:
            return False
        return any(ip in ip_network(network) for network in networks)

    def touch(self) -> None:
        """Record a use, writing at most once per LAST_USED_PRECISION."""
        now = timezone.now()
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_PRECISION:
            return
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_PRECISION)
        KamailioToken.objects.filter(stale, pk=self.pk).update(last_used_at=now)
        self.last_used_at = now


class UserToken(models.Model):
    """A person's API key (`Authorization: Token <key>`), from `POST /api/v1/auth/login`.

    Like a Kamailio token, only the SHA-256 digest of the key is stored and the key
    is shown once. It stops working at `expires_at` (USER_TOKEN_TTL after login),
    at logout, or when deleted in the admin.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="The token is refused (401) from then on.")
    last_used_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Last authenticated request, to the minute.",
    )

    history = HistoricalRecords(excluded_fields=["key_digest", "last_used_at"])

    class Meta:
        verbose_name = "user API token"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["key_digest"], name="usertoken_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.created_at:%Y-%m-%d %H:%M})" if self.created_at else "new"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    def touch(self) -> None:
        """Record a use, writing at most once per LAST_USED_PRECISION."""
        now = timezone.now()
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_PRECISION:
            return
        UserToken.objects.filter(pk=self.pk).update(last_used_at=now)
        self.last_used_at = now


def issue_user_token(*, user, ttl: timedelta | None = None) -> tuple[str, UserToken]:
    """A new API token for `user`: returns the key (not stored) and the saved token.

    The user's expired tokens are deleted on the way, so they do not pile up.
    """
    now = timezone.now()
    UserToken.objects.filter(user=user, expires_at__lte=now).delete()
    key = secrets.token_urlsafe(32)
    token = UserToken.objects.create(
        user=user,
        key_digest=hash_key(key),
        expires_at=now + (ttl if ttl is not None else settings.USER_TOKEN_TTL),
    )
    return key, token
