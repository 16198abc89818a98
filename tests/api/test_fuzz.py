"""Schema-driven fuzzing of the whole REST API: no server error, every answer as documented.

schemathesis generates requests from the OpenAPI schema the API serves (/api/v1/schema)
and sends them to the Django WSGI application in-process, as a superuser, as a tenant
operator and (the routing endpoint) as Kamailio, with both tenants' rows present.
Bounded and derandomized, so a run takes the same cases every time (two to three
minutes on PostgreSQL, where the NUL-byte 500s lived); FUZZ_MAX_EXAMPLES raises the
bound for a longer local hunt. Before the NUL fixes it found the 500s of POST
carriers, prefixes and tenant-sources (a NUL in `tenant`, JSON and multipart alike).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.models import issue_user_token
from blocklists.models import Blocklist, BlocklistEntry
from rating.models import RateDeck
from routing.models import Carrier, Customer, DialPrefix, RoutingPlan, Schedule, Trunk
from tenants.models import Tenant, TenantSource
from tests.api.conftest import make_token
from tests.factories import default_plan
from versions.models import DecisionSample, RouteTest

RTJSON = "/api/v1/kamailio/rtjson"
EVENTS = "/api/v1/kamailio/events"
CHECKS = [not_a_server_error, response_schema_conformance]

# Generated when the module is collected (pytest-django has set Django up by then) by
# the generator behind /api/v1/schema (which needs a login), without a database.
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
)
schema.app = get_wsgi_application()

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_MAX_EXAMPLES", "25")),
    derandomize=True,
    deadline=None,
    database=None,
    # Data-heavy strategies and a shared database are the point here, not smells.
    suppress_health_check=list(HealthCheck),
)

# Committed rows, as the server sees them: a write the fuzzer makes is real, and a
# failed one cannot poison a test-wide transaction on PostgreSQL.
pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

MODELS = {
    "tenants": Tenant,
    "tenant-sources": TenantSource,
    "carriers": Carrier,
    "trunks": Trunk,
    "prefixes": DialPrefix,
    "routing-plans": RoutingPlan,  # and its versions, diff, publish, rollback, tests, impact
    "customers": Customer,
    "rate-decks": RateDeck,
    "blocklists": Blocklist,
    "blocklist-entries": BlocklistEntry,
    "schedules": Schedule,
    "route-tests": RouteTest,
}


@pytest.fixture
def rows(route_a, route_b):
    """Both tenants' rows exist: half the generated ids are turned into real ones."""
    for route in (route_a, route_b):
        plan = default_plan(route.tenant)
        RouteTest.objects.create(
            tenant=route.tenant, plan=plan, name="France", callee="33123", expect_outcome="routed"
        )
        DecisionSample.objects.create(
            decision_id=f"decision-of-{route.tenant.slug}",
            decided_at=datetime.now(tz=UTC),
            tenant=route.tenant,
            plan=plan,
            request={"callee": "33123", "tenant": route.tenant.slug},
            outcome="routed",
            code=200,
        )


def with_real_id(case) -> None:
    """Point every other generated `{id}` (and `{decision_id}`) at an existing row, so
    reads and writes of real rows are fuzzed too, not only 404s."""
    decision = (case.path_parameters or {}).get("decision_id")
    if isinstance(decision, str) and len(decision) % 2 == 0:
        ids = sorted(DecisionSample.objects.values_list("decision_id", flat=True))
        case.path_parameters["decision_id"] = ids[len(decision) // 2 % len(ids)]
        return
    generated = (case.path_parameters or {}).get("id")
    if not isinstance(generated, int) or generated % 2:
        return
    model = MODELS[case.path.split("/")[3]]
    ids = sorted(model.objects.values_list("pk", flat=True))
    if ids:
        case.path_parameters["id"] = ids[generated // 2 % len(ids)]


@schema.exclude(path=[RTJSON, EVENTS]).parametrize()
@FUZZ
def test_the_api_as_a_superuser(case, rows, superuser):
    key = issue_user_token(user=superuser)[0]
    with_real_id(case)
    case.call_and_validate(headers={"Authorization": f"Token {key}"}, checks=CHECKS)


@schema.exclude(path=[RTJSON, EVENTS]).parametrize()
@FUZZ
def test_the_api_as_a_tenant_operator(case, rows, operator_a):
    key = issue_user_token(user=operator_a)[0]
    with_real_id(case)
    case.call_and_validate(headers={"Authorization": f"Token {key}"}, checks=CHECKS)


@pytest.fixture
def kamailio(db) -> str:
    return make_token("kamailio-fuzz")[0]


@schema.include(path=[RTJSON, EVENTS]).parametrize()
@FUZZ
def test_the_routing_endpoint_as_kamailio(case, rows, kamailio):
    case.call_and_validate(headers={"Authorization": f"Token {kamailio}"}, checks=CHECKS)
