"""Endpoints for machines: /healthz for load balancers, /metrics for Prometheus."""

from __future__ import annotations

import hmac
import ipaddress
import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from outcomes.metrics import trunk_exposition
from routing.deadline import call_within
from routing.metrics import exposition

# A load balancer must see a hung database as down, not wait for it: the check
# answers 503 within this many seconds (see routing.deadline.database_deadline).
HEALTHZ_DEADLINE = 0.5

logger = logging.getLogger("routing.ops")


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers a trivial query, else 503 with the reason.

    No authentication, one round trip: load balancers call it every few seconds.
    The reason names the exception class only; its message (hosts, user names)
    goes to the log, not to whoever asks. A database that hangs is a failure too:
    503 (DeadlineExceeded) after HEALTHZ_DEADLINE.
    """
    try:
        call_within(HEALTHZ_DEADLINE, _select_one)
    except DatabaseError as exc:
        logger.warning("healthz: database check failed: %s", exc)
        return JsonResponse(
            {"status": "error", "reason": f"database unavailable ({type(exc).__name__})"},
            status=503,
        )
    return JsonResponse({"status": "ok"})


def _select_one() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        # Drop the broken (or interrupted) connection: the next check reconnects,
        # rather than health-checking a socket that may hang again.
        try:
            connection.close()
        except DatabaseError:
            logger.debug("healthz: closing the broken connection failed", exc_info=True)
        raise


def client_may_read_metrics(request: HttpRequest) -> bool:
    """From METRICS_ALLOWED_NETWORKS, or with `Authorization: Bearer <METRICS_TOKEN>`.

    The network check uses REMOTE_ADDR, the peer of the socket: behind a reverse
    proxy on the same host that is the proxy, so such a proxy must not forward
    /metrics (or the allowed networks must be emptied and a token used).
    """
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
        return True
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
        peer = peer.ipv4_mapped
    return any(peer in network for network in allowed_metrics_networks())


def allowed_metrics_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    # ops.checks refuses to start with an invalid entry, so parsing cannot fail here.
    return [ipaddress.ip_network(n, strict=False) for n in settings.METRICS_ALLOWED_NETWORKS if n]


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of this deployment's metrics (all workers, see routing.metrics),
    then the per-trunk series read from the database once (outcomes.metrics)."""
    if not client_may_read_metrics(request):
        return HttpResponse(
            "Forbidden: /metrics answers METRICS_ALLOWED_NETWORKS or a METRICS_TOKEN bearer.\n",
            status=403,
            content_type="text/plain",
        )
    body, content_type = exposition()
    return HttpResponse(body + trunk_exposition(), content_type=content_type)
