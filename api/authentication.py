"""Authentication of Kamailio's routing requests by a KamailioToken."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from api.models import KamailioToken, hash_key

KEYWORDS = (b"token", b"bearer")


class KamailioTokenAuthentication(BaseAuthentication):
    """`Authorization: Token <key>` or `Bearer <key>`: one indexed query on the key digest.

    The request has no user (it is a machine, not a person), so `request.user` is
    anonymous and `request.auth` is the KamailioToken; HasKamailioToken checks it.
    """

    keyword = "Token"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Token <key>' or 'Bearer <key>'."
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        try:
            token = KamailioToken.objects.get(key_digest=hash_key(key))
        except KamailioToken.DoesNotExist:
            token = None
        if token is None or not token.is_active:
            raise exceptions.AuthenticationFailed("Invalid or inactive token.")
        if not token.allows_address(request.META.get("REMOTE_ADDR")):
            raise exceptions.PermissionDenied(
                f"Token {token.name!r} may not be used from this address."
            )
        token.touch()
        return AnonymousUser(), token

    def authenticate_header(self, request) -> str:
        return self.keyword


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
