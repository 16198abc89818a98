"""The demo's made-up traffic goes through the real ingest and shows on the traffic page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from outcomes.figures import quality
from outcomes.models import OutcomeBucket
from routing.health import status
from routing.models import TrunkHealth
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_seed_demo_gives_each_tenant_three_hours_of_traffic_and_one_unhealthy_trunk(capsys):
    call_command("seed_demo")
    buckets = OutcomeBucket.objects.count()
    call_command("seed_demo")  # idempotent: the traffic is not added twice
    assert OutcomeBucket.objects.count() == buckets

    now = dt.datetime.now(dt.UTC)
    for tenant in Tenant.objects.all():
        (figures,) = quality(
            tenant=tenant, since=now - dt.timedelta(hours=4), until=now, by="tenant"
        )
        assert figures.attempts > 1000
        assert 0.5 < figures.asr < 0.85
        assert 60 < figures.acd_s < 130
        unhealthy = [
            row
            for row in TrunkHealth.objects.filter(trunk__carrier__tenant=tenant)
            if status(row, now) == "unhealthy"
        ]
        assert len(unhealthy) == 1
        assert unhealthy[0].reason == "5 failed attempts in a row"
    assert "outcome events" in capsys.readouterr().out
