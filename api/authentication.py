"""Authentication by token: Kamailio's routing requests, and people's API requests.

Both kinds of token are looked up by the SHA-256 digest of the key; neither key is
stored. The client address used by the login lockout and throttle is decided here.
"""

from __future__ import annotations

import contextlib
import logging
import time

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.throttling import BaseThrottle

from api.models import KamailioToken, UserToken, hash_key
from routing import deadline
from routing.inline import NeedsDatabase

KEYWORDS = (b"token", b"bearer")

logger = logging.getLogger("routing.api")


def client_address(request) -> str:
    """The client's address for the login lockout, by the login throttle's rule.

    DRF's rule: the TCP peer, or with NUM_PROXIES set, the address that many
    proxies back in X-Forwarded-For. One rule for both, so they count the same client.
    """
    return BaseThrottle().get_ident(request)


def _key_from_header(request) -> str | None:
    """The key of `Authorization: Token <key>` (or Bearer), None without that header."""
    parts = get_authorization_header(request).split()
    if not parts or parts[0].lower() not in KEYWORDS:
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed(
            "Invalid Authorization header: expected 'Token <key>' or 'Bearer <key>'."
        )
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed("Invalid token.") from None


class UserTokenAuthentication(BaseAuthentication):
    """A person's API token: `Authorization: Token <key>`, refused once expired.

    `request.auth` is the UserToken, so logout knows which token to revoke.
    """

    keyword = "Token"

    def authenticate(self, request):
        key = _key_from_header(request)
        if key is None:
            return None
        token = UserToken.objects.select_related("user").filter(key_digest=hash_key(key)).first()
        if token is None or token.is_expired:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        token.touch()
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword


class KamailioTokenAuthentication(BaseAuthentication):
    """`Authorization: Token <key>` or `Bearer <key>`, looked up by the key's digest.

    The request has no user (it is a machine, not a person), so `request.user` is
    anonymous and `request.auth` is the KamailioToken; HasKamailioToken checks it.
    """

    keyword = "Token"

    def authenticate(self, request):
        key = _key_from_header(request)
        if key is None:
            return None
        token = TOKENS.get(hash_key(key))
        if token is None or not token.is_active:
            raise exceptions.AuthenticationFailed("Invalid or inactive token.")
        if not token.allows_address(request.META.get("REMOTE_ADDR")):
            raise exceptions.PermissionDenied(
                f"Token {token.name!r} may not be used from this address."
            )
        try:
            token.touch()
        except NeedsDatabase:  # deciding from memory (api.fastpath): write it beside the call
            TOKENS.touch_soon(token)
        except DatabaseError:  # bookkeeping only: never fail a call for it
            logger.warning("could not record the use of token %r: database error", token.name)
            TOKENS.database_failed()
        return AnonymousUser(), token

    def authenticate_header(self, request) -> str:
        return self.keyword


class TokenCache:
    """Tokens by key digest, kept per process for KAMAILIO_TOKEN_CACHE_SECONDS.

    Looking the token up was a third of a routing request. Its invalidation is
    time: a token revoked, deactivated or restricted in the admin stops working in
    every process within that many seconds (1 by default, the same promise as
    route changes); 0 turns the cache off. Unknown digests are remembered too, so
    a flood of wrong keys does not become a flood of queries.

    While the database fails or hangs, a token this process already knew keeps the
    last state it read (known and active, or not) until the database answers again:
    calls keep being routed from the compiled table. The lookup is tried again at
    most once per cache period; in between, known tokens are served without trying.
    A key never seen before cannot be checked: the request fails like any other
    database error (503 in the rtjson answer).
    """

    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, KamailioToken | None]] = {}
        self._pending: set[object] = set()  # digests and token ids being written beside calls

    def get(self, digest: str) -> KamailioToken | None:
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        try:
            token = KamailioToken.objects.filter(key_digest=digest).first()
        except NeedsDatabase:
            if entry is None:
                raise  # never seen: only the database can tell
            # Deciding from memory (api.fastpath): the last state read answers this
            # call, and the token is read again beside it.
            self._beside(digest, self._reread, digest)
            return entry[1]
        except DatabaseError:
            if entry is None:
                raise
            self._failed(digest, entry)
            return entry[1]
        self._store(digest, token)
        return token

    def _store(self, digest: str, token: KamailioToken | None) -> None:
        ttl = settings.KAMAILIO_TOKEN_CACHE_SECONDS
        if ttl > 0:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + ttl, token)

    def _failed(self, digest: str, entry: tuple[float, KamailioToken | None]) -> None:
        self.database_failed()
        # Keep serving what was read last; try the database again a period later.
        ttl = settings.KAMAILIO_TOKEN_CACHE_SECONDS
        self._entries[digest] = (time.monotonic() + max(ttl, 1.0), entry[1])

    def _reread(self, digest: str) -> None:
        try:
            token = KamailioToken.objects.filter(key_digest=digest).first()
        except DatabaseError:
            entry = self._entries.get(digest)
            if entry is not None:
                self._failed(digest, entry)
            return
        self._store(digest, token)

    def touch_soon(self, token: KamailioToken) -> None:
        """Record a use of `token` beside the call (token.touch() wanted the database)."""
        self._beside(("touch", token.pk), _touch, token)

    def _beside(self, key: object, function, *args) -> None:
        """`function(*args)` in a thread that may wait for the database, once at a time per key."""
        if key in self._pending:
            return
        self._pending.add(key)

        def run() -> None:
            try:
                function(*args)
            finally:
                self._pending.discard(key)

        deadline.in_background(run)

    def clear(self) -> None:
        self._entries.clear()

    def database_failed(self) -> None:
        """Drop this thread's connection after a database error: the next use reconnects."""
        with contextlib.suppress(DatabaseError):
            connection.close()


def _touch(token: KamailioToken) -> None:
    try:
        token.touch()
    except DatabaseError:
        logger.warning("could not record the use of token %r: database error", token.name)
        TOKENS.database_failed()


TOKENS = TokenCache()


class KamailioTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the Kamailio token."""

    target_class = KamailioTokenAuthentication
    name = "kamailioToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` or `Bearer <key>`, a key from "
            "`manage.py create_kamailio_token`.",
        }


class UserTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes a user's API token."""

    target_class = UserTokenAuthentication
    name = "userToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`, a key from `POST /api/v1/auth/login`; it expires.",
        }
