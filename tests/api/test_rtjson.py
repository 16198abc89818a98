"""The Kamailio routing endpoint, through its real URL: every kind of answer."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection

from api.models import KamailioToken
from routing import service
from routing.models import DialPrefix, Trunk
from tests.api.conftest import RTJSON_URL, call_body, make_token
from tests.factories import default_plan, make_route, make_trunk

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _platform_timers(settings):
    settings.ROUTING_FR_TIMER = 5000
    settings.ROUTING_FR_INV_TIMER = 30000


def rtjson(response) -> dict:
    assert response.status_code == 200, response.content
    document = response.json()["rtjson"]
    assert re.fullmatch(r"[0-9a-f]{32}", document.pop("decision_id"))
    return document


def test_it_routes_serially_with_every_route_field_of_the_trunk(post_call, tenant_a):
    trunk = make_trunk(
        tenant_a,
        "full",
        carrier="Carrier F",
        host="carrier.example.net",
        port=5070,
        transport="tcp",
        outbound_proxy="sip:sbc.example.net:5060",
        socket="udp:192.0.2.10:5060",
        path="<sip:edge.example.net;lr>",
        tech_prefix="1234#",
        strip_digits=2,
        from_display="Acme {caller}",
        from_uri="sip:{caller}@trunk.example.net",
        rewrite_to=True,
        extra_headers="P-Asserted-Identity: <sip:{caller}@trunk.example.net>\nX-Account: acme",
        branch_flags=3,
        fr_timer=2000,
        fr_inv_timer=40000,
    )
    plain = make_trunk(tenant_a, "plain", carrier="Carrier P", host="2001:db8::5")
    make_route(tenant_a, "336", (trunk, 1, 100), (plain, 2, 100))

    document = rtjson(post_call(call_body(to_name="Bob")))

    assert document == {
        "version": "1.0",
        "success": True,
        "outcome": "routed",
        "tenant": "tenant-a",
        "customer": "Default",
        "plan": "Default",
        "prefix": "336",
        "routing": "serial",
        "routes": [
            {
                "uri": "sip:1234#612345678@carrier.example.net:5070;transport=tcp",
                "dst_uri": "sip:sbc.example.net:5060",
                "path": "<sip:edge.example.net;lr>",
                "socket": "udp:192.0.2.10:5060",
                "headers": {
                    "from": {
                        "display": "Acme +33123456789",
                        "uri": "sip:+33123456789@trunk.example.net",
                    },
                    "to": {"display": "Bob", "uri": "sip:1234#612345678@carrier.example.net:5070"},
                    "extra": "P-Asserted-Identity: <sip:+33123456789@trunk.example.net>\r\n"
                    "X-Account: acme\r\n",
                },
                "branch_flags": 3,
                "fr_timer": 2000,
                "fr_inv_timer": 40000,
                "carrier": "Carrier F",
                "trunk": "full",
                "trunk_id": trunk.pk,
            },
            {
                "uri": "sip:+33612345678@[2001:db8::5]",
                "fr_timer": 5000,
                "fr_inv_timer": 30000,
                "carrier": "Carrier P",
                "trunk": "plain",
                "trunk_id": plain.pk,
            },
        ],
    }


def test_it_routes_in_parallel_with_the_exact_document(post_call, tenant_a, trunks_a):
    make_route(tenant_a, "44", *trunks_a, routing_mode="parallel")

    document = rtjson(post_call(call_body(ruri="sip:+447700900123@sbc.example.net")))

    assert document == {
        "version": "1.0",
        "success": True,
        "outcome": "routed",
        "tenant": "tenant-a",
        "customer": "Default",
        "plan": "Default",
        "prefix": "44",
        "routing": "parallel",
        "routes": [
            {
                "uri": "sip:+447700900123@192.0.2.101:5060",
                "fr_timer": 5000,
                "fr_inv_timer": 30000,
                "carrier": "Carrier A",
                "trunk": "a-primary",
                "trunk_id": trunks_a[0].pk,
            },
            {
                "uri": "sip:+447700900123@a-backup.example.net",
                "fr_timer": 5000,
                "fr_inv_timer": 30000,
                "carrier": "Carrier A",
                "trunk": "a-backup",
                "trunk_id": trunks_a[1].pk,
            },
        ],
    }


def test_the_trailing_slash_and_bearer_variants_answer_too(post_call, route_a, kamailio_key):
    response = post_call(url=RTJSON_URL + "/", HTTP_AUTHORIZATION=f"Bearer {kamailio_key}")

    assert rtjson(response)["success"] is True


def test_the_callee_comes_from_the_ruri_before_the_to_uri(post_call, tenant_a, trunks_a):
    make_route(tenant_a, "49", trunks_a[0])
    body = call_body(ruri="sip:+4930123456@sbc.example.net", to_uri="sip:+33612345678@x.net")

    assert rtjson(post_call(body))["prefix"] == "49"


@pytest.mark.parametrize(
    "fields",
    [
        {"ruri": "sips:+33612345678@[2001:db8::1]:5061;transport=tls"},
        {"ruri": "sip:%2B33612345678@sbc.example.net;user=phone"},
        {"ruri": ..., "to_uri": '"Bob" <sip:+33612345678@sbc.example.net>;tag=9'},
        {"ruri": ..., "to_uri": "tel:+33612345678;phone-context=example.net"},
        {"ruri": "sip:+33612345678;npdi@sbc.example.net"},
        {"callee": "+33 6 12 34 56 78", "ruri": "sip:999@sbc.example.net"},
        {"callee": "%2B33612345678", "ruri": "sip:%2B33612345678@sbc.example.net"},  # $rU
    ],
)
def test_the_callee_is_read_from_any_usual_uri_form(post_call, route_a, fields):
    document = rtjson(post_call(call_body(**fields)))

    assert (document["prefix"], document["routes"][0]["uri"].split("@")[0]) == (
        "33",
        "sip:+33612345678",
    )


def test_it_answers_location_for_local_users(post_call, tenant_a):
    make_route(tenant_a, "1000", action="location")

    document = rtjson(post_call(call_body(ruri="sip:1000@sbc.example.net")))

    assert document == {
        "version": "1.0",
        "success": True,
        "outcome": "location",
        "tenant": "tenant-a",
        "customer": "Default",
        "plan": "Default",
        "prefix": "1000",
        "routing": "location",
        "routes": [],
    }


def test_a_reject_route_answers_its_own_code_and_reason(post_call, tenant_a):
    make_route(tenant_a, "3389", action="reject", reject_code=603, reject_reason="Premium Blocked")

    document = rtjson(post_call(call_body(ruri="sip:+33899123456@sbc.example.net")))

    assert document == {
        "version": "1.0",
        "success": False,
        "outcome": "rejected",
        "tenant": "tenant-a",
        "customer": "Default",
        "plan": "Default",
        "prefix": "3389",
        "code": 603,
        "reason": "Premium Blocked",
        "routing": "serial",
        "routes": [],
    }


def test_no_matching_route_is_404(post_call, route_a):
    document = rtjson(post_call(call_body(ruri="sip:+4930123456@sbc.example.net")))

    assert (document["success"], document["code"], document["reason"]) == (False, 404, "No Route")


def test_an_unknown_source_is_403_and_never_routed(post_call, route_a):
    document = rtjson(post_call(call_body(source_ip="203.0.113.9")))

    assert (document["success"], document["code"], document["routes"]) == (False, 403, [])
    assert "tenant" not in document


def test_an_inactive_tenant_is_403(post_call, route_a, tenant_a):
    tenant_a.is_active = False
    tenant_a.save()

    document = rtjson(post_call())

    assert (document["success"], document["code"], document["reason"]) == (False, 403, "Forbidden")


def test_a_route_whose_trunks_are_all_inactive_is_503(post_call, route_a, trunks_a):
    Trunk.objects.filter(pk__in=[t.pk for t in trunks_a]).update(is_active=False)

    document = rtjson(post_call())

    assert (document["success"], document["code"]) == (False, 503)
    assert document["routes"] == []


def test_tenant_b_source_gets_b_routes_never_a(post_call, route_a, route_b, tenant_a, trunks_a):
    make_route(tenant_a, "49", trunks_a[0])  # only A routes Germany

    france = rtjson(post_call(call_body(source_ip="198.51.100.20")))
    germany = rtjson(post_call(call_body(source_ip="2001:db8:b::7", ruri="sip:+4930123@x.net")))

    assert france["tenant"] == "tenant-b"
    assert {route["trunk"] for route in france["routes"]} == {"b-primary", "b-backup"}
    assert (germany["tenant"], germany["code"], germany["routes"]) == ("tenant-b", 404, [])


# --- Malformed requests: 400 with field errors, never a 500 ----------------------------


def test_a_body_that_is_not_json_is_400(post_call):
    response = post_call(b"event=sip-routing&source_ip=192.0.2.7")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_a_form_content_type_is_still_read_as_json_never_as_a_form(client, kamailio_key, route_a):
    auth = {"HTTP_AUTHORIZATION": f"Token {kamailio_key}"}
    as_json = client.post(
        RTJSON_URL, json.dumps(call_body()), "application/x-www-form-urlencoded", **auth
    )
    as_form = client.post(
        RTJSON_URL, "source_ip=192.0.2.7", "application/x-www-form-urlencoded", **auth
    )

    assert rtjson(as_json)["success"] is True
    assert as_form.status_code == 400


def test_a_json_value_that_is_not_an_object_is_400(post_call):
    response = post_call(b"[1, 2, 3]")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_wrong_types_are_400_naming_each_field(post_call):
    body = call_body(call_id=12345, source_port="five", from_uri=["sip:a@b"], to_name={"x": 1})

    response = post_call(body)

    assert response.status_code == 400
    assert set(response.json()) == {"call_id", "source_port", "from_uri", "to_name"}


def test_a_request_without_a_usable_callee_is_400(post_call):
    response = post_call(call_body(ruri=..., to_uri="sip:sbc.example.net"))

    assert response.status_code == 400
    assert "callee" in response.json()


def test_an_unparsable_uri_is_400_on_its_field(post_call):
    response = post_call(call_body(ruri="http://example.net/"))

    assert response.status_code == 400
    assert "ruri" in response.json()


def test_a_bad_source_ip_is_400(post_call):
    response = post_call(call_body(source_ip="192.0.2.300"))

    assert response.status_code == 400
    assert response.json()["source_ip"] == ["Must be an IPv4 or IPv6 address."]


def test_a_missing_source_ip_is_400(post_call):
    assert post_call(call_body(source_ip=...)).status_code == 400


def test_an_oversized_body_is_400_before_it_is_parsed(post_call):
    response = post_call(call_body(from_name="A" * 20_000))

    assert response.status_code == 400
    assert "too large" in response.json()["detail"]


def test_an_oversized_string_field_is_400(post_call):
    response = post_call(call_body(callee="1" * 200))

    assert response.status_code == 400
    assert "callee" in response.json()


# --- Authentication ----------------------------------------------------------------


def test_no_token_is_401_and_not_routed(post_call, route_a):
    response = post_call(key=None)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_401(post_call, route_a):
    assert post_call(key="not-the-key").status_code == 401


def test_a_user_api_token_is_not_a_kamailio_token(post_call, route_a, operator_a):
    from api.models import issue_user_token

    user_key = issue_user_token(user=operator_a)[0]

    assert post_call(key=user_key).status_code == 401


def test_an_inactive_token_is_401(post_call, route_a):
    key, _ = make_token("old", is_active=False)

    assert post_call(key=key).status_code == 401


def test_a_token_is_refused_outside_its_networks_and_accepted_inside(post_call, route_a):
    key, _ = make_token("edge", "10.1.0.0/16", "2001:db8:ffff::/48")

    outside = post_call(key=key, REMOTE_ADDR="10.2.0.1")
    inside = post_call(key=key, REMOTE_ADDR="10.1.2.3")
    inside_v6 = post_call(key=key, REMOTE_ADDR="2001:db8:ffff::1")

    assert outside.status_code == 403
    assert rtjson(inside)["success"] is True
    assert rtjson(inside_v6)["success"] is True


def test_the_key_is_stored_only_as_a_digest(kamailio_key):
    token = KamailioToken.objects.get()

    assert kamailio_key not in (token.key_digest, token.allowed_networks, token.name)
    assert len(token.key_digest) == 64


def test_last_used_is_written_at_most_once_a_minute(post_call, route_a):
    post_call()
    first = KamailioToken.objects.get().last_used_at

    post_call()

    assert first is not None
    assert KamailioToken.objects.get().last_used_at == first


# --- Cost per request ----------------------------------------------------------------


@pytest.mark.parametrize("table_size", [10, 500])
def test_a_decision_costs_six_queries_whatever_the_table_size(
    post_call, tenant_a, trunks_a, table_size, django_assert_num_queries
):
    plan = default_plan(tenant_a)
    DialPrefix.objects.bulk_create(
        DialPrefix(tenant=tenant_a, plan=plan, prefix=str(10_000 + n)) for n in range(table_size)
    )
    make_route(tenant_a, "33", *trunks_a)
    post_call()  # the first use of the token records last_used_at

    # token, source → tenant, candidate customers, blocklist entries, candidate prefixes,
    # their targets
    with django_assert_num_queries(6):
        document = rtjson(post_call())

    assert document["prefix"] == "33"


# --- The engine fails ----------------------------------------------------------------


def test_a_database_failure_is_answered_with_success_false_and_503(post_call, route_a, caplog):
    post_call()
    with connection.cursor() as cursor:  # the prefix lookup now fails for real
        cursor.execute("ALTER TABLE routing_dialprefix RENAME TO routing_dialprefix_gone")

    response = post_call()

    assert response.status_code == 200
    assert rtjson(response) == {
        "version": "1.0",
        "success": False,
        "outcome": "error",
        "code": 503,
        "reason": "Routing Database Unavailable",
        "routing": "serial",
        "routes": [],
    }
    assert "routing engine error; answering 503 to Kamailio" in caplog.text


def test_a_database_failure_during_authentication_is_answered_too(post_call, route_a):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE api_kamailiotoken RENAME TO api_kamailiotoken_gone")

    document = rtjson(post_call())

    assert (document["success"], document["code"], document["outcome"]) == (False, 503, "error")


def test_a_bug_in_the_engine_is_answered_with_success_false_and_500(
    post_call, route_a, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(service, "resolve", broken)

    document = rtjson(post_call())

    assert (document["success"], document["outcome"]) == (False, "error")
    assert (document["code"], document["reason"]) == (500, "Routing Engine Failure")
    assert "routing engine error; answering 500 to Kamailio" in caplog.text
    assert "KeyError: 'surprise'" in caplog.text


def test_each_failure_answer_has_its_own_decision_id(post_call, route_a):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE routing_dialprefix RENAME TO routing_dialprefix_gone")

    ids = {post_call().json()["rtjson"]["decision_id"] for _ in range(3)}

    assert len(ids) == 3
