"""The live traffic page: its figures are the buckets', it is scoped to the user's tenant,
and its queries do not grow with the trunks or the buckets."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing.models import TrunkHealth
from tests.factories import make_bucket, make_trunk

URL = "/admin/traffic/"


def minutes_ago(n: int) -> dt.datetime:
    return timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=n)


@pytest.fixture
def traffic(tenant_a, trunks_a, tenant_b, trunks_b):
    primary, backup = trunks_a
    make_bucket(
        tenant_a, primary, minutes_ago(5), codes={200: 3, 486: 1}, durations=(60.0, 30.0),
        pdd={500: 2, 1000: 2},
    )  # fmt: skip
    make_bucket(tenant_a, backup, minutes_ago(5), codes={503: 2}, prefix="44")
    make_bucket(tenant_a, backup, minutes_ago(90), codes={503: 1}, prefix="49")
    make_bucket(tenant_a, primary, minutes_ago(5 * 60), codes={200: 50})  # only in 6 h
    make_bucket(tenant_b, trunks_b[0], minutes_ago(5), codes={500: 7}, prefix="99")
    TrunkHealth.objects.create(
        trunk=backup,
        state="unhealthy",
        since=minutes_ago(5),
        until=timezone.now() + dt.timedelta(minutes=1),
        reason="ASR 0% over 3 attempts",
    )


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def test_an_operator_sees_the_figures_of_the_buckets(client, operator_a, traffic):
    client.force_login(operator_a)

    response = client.get(URL)

    assert response.status_code == 200
    context = response.context
    assert (context["tenant"].slug, context["hours"]) == ("tenant-a", 3)
    assert context["totals"] == {"attempts": 7, "answered": 3}
    data = context["chart_data"]
    assert len(data["t"]) == 180
    assert sum(data["attempts"]) == 7
    busiest = data["attempts"].index(6)
    assert (data["answered"][busiest], data["asr"][busiest], data["acd"][busiest]) == (
        3,
        50.0,
        45.0,
    )
    assert data["asr"][0] is None  # no attempts: a gap, not 0 %
    rows = {row.trunk_name: row for row, _ in context["trunks"]}
    primary = rows["a-primary"].figures
    assert (primary.attempts, primary.asr, primary.acd_s, primary.ner) == (4, 0.75, 45.0, 1.0)
    assert (primary.pdd_p50_ms, primary.pdd_p95_ms) == (500, 1000)
    assert rows["a-backup"].health == "unhealthy"
    assert [(p.prefix, p.failures) for p in context["prefixes"]] == [
        ("44", 2),
        ("33", 1),
        ("49", 1),
    ]

    page = text(response)
    assert '<strong id="traffic-attempts">7</strong> attempts' in page
    for shown in ("75.0%", "45.0 s", "500 ms"):
        assert shown in page
    assert "ASR 0% over 3 attempts" in page
    assert re.search(r'tr-health-unhealthy"[^>]*>unhealthy<', page)
    assert re.search(r'tr-health-healthy"[^>]*>healthy<', page)
    embedded = re.search(r'id="traffic-data" type="application/json">(.*?)</script>', page)
    assert json.loads(embedded.group(1)) == data
    # Nothing of the outsider's: its trunk, its prefix.
    assert "b-primary" not in page
    assert ">99<" not in page


def test_the_window_is_chosen_among_fixed_ones(client, operator_a, traffic):
    client.force_login(operator_a)

    six = client.get(URL, {"hours": "6"}).context
    odd = client.get(URL, {"hours": "5"}).context

    assert (six["hours"], six["totals"]["attempts"], len(six["chart_data"]["t"])) == (6, 57, 360)
    assert six["slot_minutes"] == 10
    assert odd["hours"] == 3


def test_another_tenant_is_not_found_for_an_operator(client, outsider, operator_a, traffic):
    client.force_login(outsider)

    assert client.get(URL, {"tenant": "tenant-a"}).status_code == 404
    assert client.get(URL, {"tenant": "no-such-tenant"}).status_code == 404
    own = client.get(URL, {"tenant": "tenant-b"})
    assert own.status_code == 200
    assert own.context["totals"]["attempts"] == 7
    assert "a-primary" not in text(own)
    assert "Tenant A" not in text(own)


def test_a_superuser_picks_a_tenant(client, superuser, traffic):
    client.force_login(superuser)

    first = client.get(URL)
    picked = client.get(URL, {"tenant": "tenant-a", "hours": "1"})

    assert first.context["tenant"] is None
    assert "Pick a tenant" in text(first)
    assert [t.slug for t in first.context["tenants"]] == ["tenant-a", "tenant-b"]
    assert picked.context["tenant"].slug == "tenant-a"
    assert picked.context["totals"]["attempts"] == 6
    assert client.get(URL, {"tenant": "nope"}).status_code == 404


def test_a_staff_user_without_a_tenant_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user("stray", password="pw", is_staff=True)
    client.force_login(user)

    assert client.get(URL).status_code == 403


def test_anonymous_users_go_to_the_login(client, traffic):
    response = client.get(URL)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_admin_index_links_the_page(client, operator_a):
    client.force_login(operator_a)

    assert 'href="/admin/traffic/"' in client.get("/admin/").content.decode()


def test_queries_do_not_grow_with_trunks_or_buckets(client, operator_a, traffic, tenant_a):
    client.force_login(operator_a)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(URL).status_code == 200
        return len(queries)

    few = count()
    for n in range(15):
        trunk = make_trunk(tenant_a, f"extra-{n}", carrier=f"Carrier {n % 4}")
        TrunkHealth.objects.create(trunk=trunk, state="unhealthy", since=minutes_ago(3))
        for minute in range(1, 170, 11):
            make_bucket(tenant_a, trunk, minutes_ago(minute), codes={200: 2, 503: 1}, prefix=f"{n}")
    many = count()

    assert many == few
    assert many <= 12
