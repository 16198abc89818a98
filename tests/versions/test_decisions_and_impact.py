"""The sampled decision log (versions.decisions) and the impact preview (versions.impact)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import DatabaseError, connection
from django.test import Client

from routing.models import RouteTarget
from routing.resolver import CallRequest
from routing.service import decide
from tests.api.conftest import RTJSON_URL, call_body, make_token
from tests.evapi_bridge.test_bridge import database_outage
from tests.factories import default_plan, make_route
from versions.decisions import DecisionLog, decision_log, request_fields, request_from, sampled
from versions.impact import preview
from versions.models import DecisionSample
from versions.publishing import publish

pytestmark = pytest.mark.django_db(transaction=True)


def test_sampling_picks_the_same_share_of_ids_in_every_process():
    ids = [f"{n:032x}" for n in range(20_000)]
    chosen = [i for i in ids if sampled(i, 5)]
    assert 800 < len(chosen) < 1200
    assert chosen == [i for i in ids if sampled(i, 5)]
    assert all(sampled(i, 100) for i in ids[:100])
    assert not any(sampled(i, 0) for i in ids[:100])


def test_a_request_survives_the_round_trip_through_json():
    request = CallRequest(
        callee="33123",
        caller="4420",
        source_ip="192.0.2.1",
        source_port=5060,
        at=dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC),
        call_id="abc",
    )
    assert request_from(json.loads(json.dumps(request_fields(request)))) == request


def test_the_transports_decisions_are_sampled_and_found_by_id(settings, route_a, tenant_a):
    settings.ROUTING_DECISION_SAMPLE_PERCENT = 100
    request = CallRequest(callee="33123456", caller="4420", source_ip="192.0.2.10")
    decision = decide(request, transport="http")
    simulated = decide(request)  # a simulation is not a real call: not recorded
    decision_log().flush()
    sample = DecisionSample.objects.get(decision_id=decision.decision_id)
    assert not DecisionSample.objects.filter(decision_id=simulated.decision_id).exists()
    assert sample.tenant == tenant_a
    assert sample.plan == default_plan(tenant_a)
    assert (sample.outcome, sample.code, sample.transport) == ("routed", 200, "http")
    assert sample.trunks == ["a-primary", "a-backup"]
    assert sample.request["callee"] == "33123456"
    assert any("matched prefix 33" in line for line in sample.trace)


def test_the_http_endpoint_records_its_decisions(settings, route_a, tenant_a):
    settings.ROUTING_DECISION_SAMPLE_PERCENT = 100
    key, _ = make_token()
    answer = Client().post(
        RTJSON_URL, call_body(), content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert answer.status_code == 200
    decision_log().flush()
    assert DecisionSample.objects.filter(transport="http", tenant=tenant_a).count() == 1


def test_an_unavailable_database_keeps_samples_for_the_next_flush(route_a):
    log = DecisionLog(percent=100, retention_hours=1, background=False)
    request = CallRequest(callee="33123", source_ip="192.0.2.10")
    decisions = [decide(request) for _ in range(3)]
    for decision in decisions:
        log.record(request, decision, "evapi")
    with database_outage() as outage:
        outage.lock()
        connection.close()
        with pytest.raises(DatabaseError):
            log.flush()
        outage.unlock()
        assert log.flush() == 3
    assert DecisionSample.objects.count() == 3


def test_the_impact_preview_counts_calls_the_draft_would_change(settings, tenant_a, trunks_a):
    settings.ROUTING_DECISION_SAMPLE_PERCENT = 100
    france = make_route(tenant_a, "33", *trunks_a)
    make_route(tenant_a, "44", *trunks_a)
    plan = default_plan(tenant_a)
    publish(plan)
    for number in ("33100", "33200", "44100", "49100"):
        decide(CallRequest(callee=number, source_ip="192.0.2.10"), transport="evapi")
    decision_log().flush()
    assert preview(plan).changed == 0
    first, _ = france.targets.order_by("priority")
    RouteTarget.objects.filter(pk=first.pk).update(priority=3)  # France: a-backup first
    make_route(tenant_a, "49", trunks_a[0])  # Germany: no route -> routed
    impact = preview(plan)
    assert impact.replayed == 4
    assert (impact.outcome_changed, impact.first_trunk_changed) == (1, 2)
    assert sorted(change.what for change in impact.examples) == [
        "first trunk",
        "first trunk",
        "outcome",
    ]
    germany = next(c for c in impact.examples if c.what == "outcome")
    assert germany.describe(germany.live) == "404 No Route"
    assert germany.describe(germany.draft) == "200 via a-primary"


def test_the_impact_preview_replays_only_the_plans_own_calls(settings, tenant_a, route_a, route_b):
    settings.ROUTING_DECISION_SAMPLE_PERCENT = 100
    decide(CallRequest(callee="33100", source_ip="198.51.100.7"), transport="evapi")
    decision_log().flush()
    assert preview(default_plan(tenant_a)).replayed == 0
