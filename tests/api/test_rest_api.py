"""The route-table REST API: a whole table managed without the admin, and its rules."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api.models import UserToken, hash_key, issue_user_token
from routing.models import Carrier, DialPrefix, RouteTarget
from tests.api.conftest import RTJSON_URL, call_body
from tests.factories import make_operator, make_route, make_trunk

pytestmark = pytest.mark.django_db


def api_as(user) -> APIClient:
    """A client authenticated the way scripts do: a user's API token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_user_token(user=user)[0]}")
    return client


@pytest.fixture
def root_api(superuser) -> APIClient:
    return api_as(superuser)


@pytest.fixture
def operator_api(operator_a) -> APIClient:
    return api_as(operator_a)


def created(response) -> dict:
    assert response.status_code == 201, response.content
    return response.json()


def test_a_superuser_builds_a_whole_route_table_that_kamailio_then_routes(
    root_api, client, kamailio_key
):
    created(root_api.post("/api/v1/tenants", {"name": "Acme", "slug": "acme"}, format="json"))
    created(
        root_api.post(
            "/api/v1/tenant-sources", {"tenant": "acme", "network": "203.0.113.0/24"}, format="json"
        )
    )
    carrier = created(
        root_api.post("/api/v1/carriers", {"tenant": "acme", "name": "Upstream"}, format="json")
    )
    primary, backup = (
        created(
            root_api.post(
                "/api/v1/trunks",
                {"carrier": carrier["id"], "name": name, "host": host, "transport": "tcp"},
                format="json",
            )
        )
        for name, host in [("primary", "[2001:db8::1]"), ("backup", "backup.example.net")]
    )
    route = created(
        root_api.post(
            "/api/v1/prefixes",
            {
                "tenant": "acme",
                "prefix": "33",
                "targets": [
                    {"trunk": backup["id"], "priority": 2, "weight": 100},
                    {"trunk": primary["id"], "priority": 1, "weight": 100},
                ],
            },
            format="json",
        )
    )

    answer = client.post(
        RTJSON_URL,
        call_body(source_ip="203.0.113.5"),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {kamailio_key}",
    ).json()["rtjson"]

    assert primary["host"] == "2001:db8::1"  # the model's clean() normalised it
    assert [t["trunk"] for t in route["targets"]] == [primary["id"], backup["id"]]  # by priority
    assert [r["trunk"] for r in answer["routes"]] == ["primary", "backup"]
    assert answer["routes"][0]["uri"] == "sip:+33612345678@[2001:db8::1];transport=tcp"


def test_a_tenant_user_writes_into_their_own_tenant_whatever_they_send(operator_api, tenant_b):
    row = created(
        operator_api.post("/api/v1/carriers", {"name": "Mine", "tenant": "tenant-b"}, format="json")
    )

    assert row["tenant"] == "tenant-a"
    assert Carrier.objects.get(pk=row["id"]).tenant.slug == "tenant-a"


def test_a_superuser_must_name_the_tenant(root_api, tenant_a):
    response = root_api.post("/api/v1/carriers", {"name": "Nobody's"}, format="json")

    assert response.status_code == 400
    assert "tenant" in response.json()


def test_a_row_cannot_move_to_another_tenant(root_api, trunks_a, tenant_b):
    carrier = trunks_a[0].carrier

    response = root_api.patch(f"/api/v1/carriers/{carrier.pk}", {"tenant": "tenant-b"})

    assert response.status_code == 400
    assert "another tenant" in response.json()["tenant"][0]


def test_duplicates_are_400s_with_the_models_messages(operator_api, route_a, trunks_a):
    carrier = operator_api.post("/api/v1/carriers", {"name": "Carrier A"}, format="json")
    prefix = operator_api.post("/api/v1/prefixes", {"prefix": "33"}, format="json")
    trunk = operator_api.post(
        "/api/v1/trunks",
        {"carrier": trunks_a[0].carrier_id, "name": "a-primary", "host": "h.example.net"},
        format="json",
    )

    assert (carrier.status_code, carrier.json()) == (
        400,
        {"non_field_errors": ["This tenant already has a carrier with this name."]},
    )
    assert prefix.json() == {
        "non_field_errors": [
            "This routing plan already has an unscheduled route for this prefix and caller prefix "
            "or pattern."
        ]
    }
    assert trunk.json() == {
        "non_field_errors": ["This carrier already has a trunk with this name."]
    }


def test_bad_values_are_400s_with_the_models_messages(operator_api, trunks_a):
    trunk = operator_api.post(
        "/api/v1/trunks",
        {"carrier": trunks_a[0].carrier_id, "name": "x", "host": "bad host", "port": 70000},
        format="json",
    )
    reject = operator_api.post(
        "/api/v1/prefixes", {"prefix": "1900", "action": "reject"}, format="json"
    )
    bounds = operator_api.post(
        "/api/v1/prefixes", {"prefix": "4477", "max_length": 3}, format="json"
    )
    digits = operator_api.post("/api/v1/prefixes", {"prefix": "+44"}, format="json")

    assert trunk.status_code == 400
    assert set(trunk.json()) == {"host", "port"}
    assert reject.json() == {"reject_code": ["A reject route needs a SIP code, e.g. 403."]}
    assert "No number of at most 3 digits" in bounds.json()["max_length"][0]
    assert digits.status_code == 400
    assert "prefix" in digits.json()


def test_targets_are_replaced_by_trunk_and_kept_when_omitted(operator_api, route_a, trunks_a):
    backup = trunks_a[1]
    kept_id = RouteTarget.objects.get(prefix=route_a, trunk=backup).pk
    url = f"/api/v1/prefixes/{route_a.pk}"

    replaced = operator_api.patch(
        url, {"targets": [{"trunk": backup.pk, "priority": 1, "weight": 70}]}, format="json"
    )
    untouched = operator_api.patch(url, {"description": "France, backup only"}, format="json")

    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["targets"] == [
        {
            "trunk": backup.pk,
            "trunk_name": "Carrier A / a-backup",
            "priority": 1,
            "weight": 70,
            "schedule": None,
        }
    ]
    assert untouched.json()["targets"] == replaced.json()["targets"]
    assert list(route_a.targets.values_list("pk", flat=True)) == [kept_id]


def test_a_trunk_twice_in_targets_is_a_400_on_that_target(operator_api, trunks_a):
    body = {"prefix": "49", "targets": [{"trunk": trunks_a[0].pk}, {"trunk": trunks_a[0].pk}]}

    response = operator_api.post("/api/v1/prefixes", body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "targets": {"1": {"trunk": ["This trunk is already a target of this route."]}}
    }
    assert not DialPrefix.objects.filter(prefix="49").exists()


def test_a_superuser_cannot_target_another_tenants_trunk(root_api, tenant_a, trunks_b):
    body = {"tenant": "tenant-a", "prefix": "49", "targets": [{"trunk": trunks_b[0].pk}]}

    response = root_api.post("/api/v1/prefixes", body, format="json")

    assert response.status_code == 400
    assert "another tenant" in response.json()["targets"]["0"]["trunk"][0]


def test_deleting_a_row_still_in_use_is_a_409_saying_by_what(operator_api, route_a, trunks_a):
    response = operator_api.delete(f"/api/v1/trunks/{trunks_a[0].pk}")

    assert response.status_code == 409
    assert "33" in response.json()["detail"]


def test_a_409_names_a_few_users_and_counts_the_rest(operator_api, tenant_a, trunks_a):
    for n in range(7):
        make_route(tenant_a, f"4{n}", trunks_a[0])

    response = operator_api.delete(f"/api/v1/trunks/{trunks_a[0].pk}")

    assert response.status_code == 409
    assert response.json()["detail"].count("→") == 5
    assert "and 2 more" in response.json()["detail"]


def test_lists_are_paginated_filterable_searchable_and_ordered(operator_api, tenant_a):
    for n in range(5):
        make_trunk(tenant_a, f"t{n}", carrier="Big" if n % 2 else "Small", is_active=n != 3)

    page = operator_api.get("/api/v1/trunks", {"page_size": 2, "ordering": "-name"}).json()
    inactive = operator_api.get("/api/v1/trunks", {"is_active": "false"}).json()
    search = operator_api.get("/api/v1/trunks", {"search": "big"}).json()

    assert page["count"] == 5
    assert [t["name"] for t in page["results"]] == ["t4", "t3"]
    assert page["next"]
    assert [t["name"] for t in inactive["results"]] == ["t3"]
    assert sorted(t["name"] for t in search["results"]) == ["t1", "t3"]


def test_prefixes_filter_by_trunk_and_prefix_start(operator_api, route_a, trunks_a, tenant_a):
    make_route(tenant_a, "331", trunks_a[1])
    make_route(tenant_a, "44", trunks_a[0])

    by_trunk = operator_api.get("/api/v1/prefixes", {"trunk": trunks_a[1].pk}).json()
    france = operator_api.get("/api/v1/prefixes", {"prefix_startswith": "33"}).json()

    assert sorted(p["prefix"] for p in by_trunk["results"]) == ["33", "331"]
    assert sorted(p["prefix"] for p in france["results"]) == ["33", "331"]


def test_tenants_and_sources_are_read_only_for_tenant_users(operator_api, tenant_a):
    source = tenant_a.sources.first()

    tenants = operator_api.get("/api/v1/tenants").json()
    change = operator_api.patch(f"/api/v1/tenants/{tenant_a.pk}", {"is_active": False})
    add_source = operator_api.post(
        "/api/v1/tenant-sources", {"tenant": "tenant-a", "network": "10.0.0.0/8"}
    )
    drop_source = operator_api.delete(f"/api/v1/tenant-sources/{source.pk}")

    assert [t["slug"] for t in tenants["results"]] == ["tenant-a"]
    assert tenants["results"][0]["sources"] == ["192.0.2.0/24", "2001:db8:a::/48"]
    assert (change.status_code, add_source.status_code, drop_source.status_code) == (403, 403, 403)


def test_a_network_of_another_tenant_is_a_clear_400(root_api, tenant_a, tenant_b):
    response = root_api.post(
        "/api/v1/tenant-sources", {"tenant": "tenant-b", "network": "192.0.2.0/24"}
    )
    host_bits = root_api.post(
        "/api/v1/tenant-sources", {"tenant": "tenant-b", "network": "10.0.0.1/8"}
    )

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": [
            "This network already names a tenant; a network can belong to one tenant only."
        ]
    }
    assert "did you mean 10.0.0.0/8" in host_bits.json()["network"][0]


def test_model_permissions_apply_a_tenant_user_without_the_group_gets_403(tenant_a):
    bare = make_operator("bare", None)
    bare.tenant = tenant_a
    bare.save()

    assert api_as(bare).get("/api/v1/carriers").status_code == 403


def test_a_user_without_tenant_sees_nothing(db, tenant_a, trunks_a):
    from django.contrib.auth.models import Permission

    stray = make_operator("stray", None)
    stray.user_permissions.add(Permission.objects.get(codename="view_carrier"))

    response = api_as(stray).get("/api/v1/carriers")

    assert (response.status_code, response.json()["count"]) == (200, 0)


def test_anonymous_requests_are_401(client, route_a):
    response = client.get("/api/v1/prefixes")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_user_gets_their_api_token_with_their_password(client, operator_a):
    response = client.post("/api/v1/auth/token", {"username": "operator-a", "password": "pw"})

    key = response.json()["token"]
    assert UserToken.objects.get(user=operator_a).key_digest == hash_key(key)


def test_an_operator_sees_the_tenant_of_each_trunk(operator_api, trunks_a):
    listing = operator_api.get("/api/v1/trunks").json()
    detail = operator_api.get(f"/api/v1/trunks/{trunks_a[0].pk}").json()

    assert [t["tenant"] for t in listing["results"]] == ["tenant-a", "tenant-a"]
    assert detail["tenant"] == "tenant-a"


@pytest.mark.parametrize(
    ("resource", "row"),
    [
        ("tenant-sources", lambda route: route.tenant.sources.first()),
        ("carriers", lambda route: route.targets.first().trunk.carrier),
        ("trunks", lambda route: route.targets.first().trunk),
        ("prefixes", lambda route: route),
    ],
)
def test_every_resource_renders_a_row_alike_for_its_operator_and_a_superuser(
    operator_api, root_api, route_a, resource, row
):
    url = f"/api/v1/{resource}/{row(route_a).pk}"

    as_operator = operator_api.get(url).json()
    as_root = root_api.get(url).json()

    assert as_operator["tenant"] == "tenant-a"
    assert as_operator == as_root


def test_a_from_uri_that_is_not_a_sip_uri_is_a_400_on_that_field(operator_api, trunks_a):
    url = f"/api/v1/trunks/{trunks_a[0].pk}"

    bad = operator_api.patch(url, {"from_uri": "alice@x"}, format="json")
    good = operator_api.patch(url, {"from_uri": "sip:{caller}@trunk.example.net"}, format="json")

    assert bad.status_code == 400
    assert bad.json() == {
        "from_uri": [
            "alice@x is not a valid From URI: it must start with sip: or sips:; write it "
            "like sip:{caller}@trunk.example.net."
        ]
    }
    assert good.status_code == 200
    trunks_a[0].refresh_from_db()
    assert trunks_a[0].from_uri == "sip:{caller}@trunk.example.net"


def test_a_route_shows_warnings_for_trunks_that_strip_too_much(operator_api, tenant_a, trunks_a):
    trunks_a[1].strip_digits = 5
    trunks_a[1].save()
    body = {"prefix": "44", "targets": [{"trunk": trunks_a[1].pk}]}
    response = operator_api.post("/api/v1/prefixes", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["warnings"] == [
        "Carrier A / a-backup strips 5 digits, but this route matches numbers as short as "
        "2 digits: such calls skip it. Set a minimum length above 5, or strip fewer digits."
    ]
    empty = operator_api.post("/api/v1/prefixes", {"prefix": "49"}, format="json")
    assert empty.json()["warnings"] == [
        "This route has no target: its calls fall back to a shorter prefix."
    ]


def test_routing_plans_list_with_their_counts_and_stable_pages(operator_api, route_a):
    body = operator_api.get("/api/v1/routing-plans?page=1&page_size=1").json()
    assert body["results"] == [
        {
            "id": route_a.plan_id,
            "tenant": "tenant-a",
            "name": "Default",
            "description": "",
            "prefix_count": 1,
            "customer_count": 1,
        }
    ]


def test_trunks_carry_caps_health_policy_and_read_only_health(
    operator_api, trunks_a, operator_a, django_assert_max_num_queries
):
    from routing import health

    primary, backup = trunks_a
    health.override(backup, "down", operator_a, "maintenance")
    url = f"/api/v1/trunks/{primary.pk}"
    response = operator_api.patch(
        url,
        {"max_calls": 30, "max_cps": 5, "health_failure_ratio": 40, "health_cooldown": 120,
         "health": {"status": "forced_up"}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["max_calls"], body["max_cps"]) == (30, 5)
    assert (body["health_failure_ratio"], body["health_cooldown"]) == (40, 120)
    assert body["health"] == {
        "status": "healthy",
        "state": "healthy",
        "since": None,
        "until": None,
        "reason": "",
        "override": "auto",
    }  # read-only: the PATCH could not force it up
    with django_assert_max_num_queries(6):  # the health comes with the trunks (a join)
        listed = operator_api.get("/api/v1/trunks").json()
    rows = {row["name"]: row["health"] for row in listed["results"]}
    assert rows["a-backup"]["status"] == "forced_down"
    bad = operator_api.patch(url, {"health_failure_ratio": 0}, format="json")
    assert bad.status_code == 400
