"""Project-wide middleware: what every app's pages and input paths share.

It lives here rather than in an app because it guards them all alike (the admin,
the ops pages, the REST API and the Kamailio endpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.views import APIView

from api.parsers import NUL_KEY_MESSAGE, NUL_MESSAGE


def _nul_in(data) -> tuple[str, str] | None:
    """(field name, message) of the first NUL in a QueryDict's names or values."""
    for key, values in data.lists():
        if "\x00" in key:
            return key, NUL_KEY_MESSAGE
        if any("\x00" in value for value in values):
            return key, NUL_MESSAGE
    return None


class RefuseNulMiddleware:
    """Answers 400, naming the parameter, when the URL path, a query-string parameter or a
    form field holds a NUL character.

    PostgreSQL text cannot hold one, so any NUL that reaches a lookup is a 500 there
    (an admin changelist filter or search, the admin autocomplete's `term`, an API
    filter); SQLite would silently compare it instead. Checked here once, before any
    view, rather than field by field.

    Form bodies are checked for Django's views, which read request.POST. DRF views
    parse their own bodies (JSON, and forms for the browsable API) with the parsers of
    api/parsers.py, which refuse a NUL the same way: reading the body here would parse
    a Kamailio request sent with a form content type as a form.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable, view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        is_api = isinstance(getattr(view_func, "cls", None), type) and issubclass(
            view_func.cls, APIView
        )
        found: tuple[str, str] | None = None
        if "\x00" in request.path_info:
            found = ("path", NUL_MESSAGE)
        elif request.META.get("QUERY_STRING"):
            found = _nul_in(request.GET)
        if found is None and not is_api and request.method == "POST":
            found = _nul_in(request.POST)
        if found is None:
            return None
        name, message = found
        if is_api:
            return JsonResponse({name: [message]}, status=400)
        return HttpResponseBadRequest(
            f"{message} (field {name!r})", content_type="text/plain; charset=utf-8"
        )


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's, allowing inline scripts on the Swagger UI page only.

    drf-spectacular's SpectacularSwaggerView renders its init script inline (its
    SpectacularSwaggerSplitView serves it as a file instead, which would let this go).
    """

    def get_policy_parts(
        self, request: HttpRequest, response: Any, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        match = getattr(request, "resolver_match", None)
        view = getattr(match.func, "cls", None) if match is not None else None
        if isinstance(view, type) and issubclass(view, SpectacularSwaggerView):
            parts.update = {**(parts.update or {}), "script-src": [UNSAFE_INLINE]}
        return parts
