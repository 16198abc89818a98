"""Logins that hand out API tokens, their logout, and the answer to a locked-out login.

`POST /api/v1/auth/token` checks the password through `authenticate()` with the
Django request, so django-axes counts the failure and locks the (user name,
address) pair out like on the admin's login page; a scoped throttle limits the
attempts per address before any password is hashed.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME, authenticate
from django.contrib.auth.signals import user_logged_in
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from api.authentication import UserTokenAuthentication
from api.models import UserToken, issue_user_token
from api.views import USER_AUTHENTICATION


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )


@extend_schema(
    request=LoginSerializer,
    responses={
        200: inline_serializer(
            "TokenIssued",
            {"token": serializers.CharField(), "expiry": serializers.DateTimeField()},
        )
    },
    summary="Log in: a new API token (shown once) and when it expires",
    tags=["auth"],
)
class LoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    def post(self, request: Request) -> Response:
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # The Django request, not DRF's wrapper: axes flags a lockout on it, and its
        # middleware turns the flag into the lockout answer.
        user = authenticate(
            request._request,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        if user is None or not user.is_active:
            raise ValidationError(
                {"non_field_errors": ["Unable to log in with these credentials."]}
            )
        # What login() would announce: axes clears the failures of this (user name,
        # address), and last_login is set.
        user_logged_in.send(sender=type(user), request=request._request, user=user)
        key, token = issue_user_token(user=user)
        return Response({"token": key, "expiry": token.expires_at})


@extend_schema(request=None, responses={204: None}, summary="Revoke this token", tags=["auth"])
class LogoutView(APIView):
    authentication_classes = [UserTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    request=None, responses={204: None}, summary="Revoke all my API tokens", tags=["auth"]
)
class LogoutAllView(APIView):
    authentication_classes = USER_AUTHENTICATION
    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        # One by one, so the history records each revocation with who did it.
        for token in UserToken.objects.filter(user=request.user):
            token.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def lockout_message() -> str:
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    return (
        f"Too many failed logins for this user name from your address: logins are "
        f"refused for {minutes} minutes after the last attempt. Try again later, or ask "
        "an administrator to unlock it (Admin → Axes → Access attempts)."
    )


def lockout_response(
    request: HttpRequest, response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """What a locked-out login gets (AXES_LOCKOUT_CALLABLE): 429, and why, in its language.

    The API gets JSON with Retry-After; the admin gets its login page again with
    the message where a wrong password is reported.
    """
    message = lockout_message()
    if not request.path.startswith("/admin/"):
        answer = JsonResponse({"detail": message}, status=429)
        answer["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
        return answer
    form = AdminAuthenticationForm(
        request, initial={"username": (credentials or {}).get("username")}
    )
    form.cleaned_data = {}  # add_error() expects a cleaned form
    form.add_error(None, message)
    context = {
        **admin.site.each_context(request),
        "title": "Log in",
        "subtitle": None,
        "app_path": request.get_full_path(),
        "form": form,
        REDIRECT_FIELD_NAME: request.POST.get(REDIRECT_FIELD_NAME) or "/admin/",
    }
    return TemplateResponse(request, "admin/login.html", context, status=429).render()
