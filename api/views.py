"""Views of the API: the Kamailio routing endpoint, the simulator and the route-table API."""

from __future__ import annotations

import logging
import time
from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import KamailioTokenAuthentication
from api.parsers import BoundedJSONParser
from api.permissions import HasKamailioToken
from api.serializers import CallRequestSerializer, RoutingAnswerSerializer
from routing import service
from routing.metrics import observe_decision
from routing.requests import CallFieldsError, call_request_from_fields
from routing.resolver import CallRequest, Decision, Outcome, to_rtjson

logger = logging.getLogger("routing.api")

# What Kamailio gets when the engine itself fails: an answer it can relay at once.
ENGINE_ERROR_RTJSON: dict[str, Any] = {
    "version": "1.0",
    "success": False,
    "code": 500,
    "reason": "Routing engine error",
    "routing": "serial",
    "routes": [],
}


def build_call_request(serializer_class, data: Any, **extra: Any) -> CallRequest:
    """Validate `data` and build the CallRequest, or raise a DRF ValidationError (400)."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    try:
        return call_request_from_fields(serializer.validated_data, **extra)
    except CallFieldsError as exc:
        raise ValidationError({name: [message] for name, message in exc.errors.items()}) from None


@extend_schema(
    request={"application/json": CallRequestSerializer},
    responses={200: RoutingAnswerSerializer},
    examples=[
        OpenApiExample(
            "New call",
            request_only=True,
            value={
                "event": "sip-routing",
                "source_ip": "192.0.2.7",
                "source_port": 5060,
                "call_id": "a84b4c76e66710@pbx",
                "from_name": "Alice",
                "from_uri": "sip:+33123456789@pbx.example.net",
                "from_tag": "1928301774",
                "to_name": "",
                "to_uri": "sip:+33612345678@sbc.example.net",
                "to_tag": "",
                "ruri": "sip:+33612345678@sbc.example.net",
            },
        )
    ],
    summary="Route one call (for Kamailio)",
    tags=["kamailio"],
)
class RtjsonView(APIView):
    """Kamailio posts each new call here and routes it by the rtjson document it gets back.

    A call that is not routed (no route, reject, unknown source, inactive tenant) is
    still a 200, with `success: false` and the SIP code and reason to reply. A body
    that is not a routing request is a 400; a bad token 401/403. If the engine fails
    (the database is down), the answer is a 200 with code 500 that Kamailio relays.
    """

    authentication_classes = [KamailioTokenAuthentication]
    permission_classes = [HasKamailioToken]
    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]
    throttle_classes: list = []

    started = 0.0

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        super().initial(request, *args, **kwargs)

    def post(self, request: Request) -> Response:
        try:
            call = build_call_request(CallRequestSerializer, request.data)
        except ValidationError:
            self.observe(Outcome.INVALID)
            raise
        decision: Decision = service.decide(call)
        document = to_rtjson(decision)
        self.observe(decision.outcome)
        return Response({"rtjson": document})

    def observe(self, outcome: Outcome) -> None:
        observe_decision("http", str(outcome), time.perf_counter() - self.started)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, APIException):
            return super().handle_exception(exc)
        # The engine failed (typically the database): Kamailio must still get an
        # answer it can relay at once, not a 500 page it cannot parse.
        logger.exception("routing engine error; answering 500 to Kamailio")
        self.observe(Outcome.ERROR)
        return Response({"rtjson": dict(ENGINE_ERROR_RTJSON)}, status=status.HTTP_200_OK)
