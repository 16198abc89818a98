"""A NUL character in any input is a 400 naming where it was, never a PostgreSQL 500.

PostgreSQL text cannot hold a NUL: before, one that reached a lookup (a tenant slug,
a filter, a search) raised DataError there, while SQLite quietly compared it. Each
test below failed on PostgreSQL with a 500, and on SQLite answered without naming
the NUL.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from api.parsers import NUL_KEY_MESSAGE, NUL_MESSAGE, nul_errors, parse_json
from api.serializers import CarrierSerializer
from tests.api.conftest import call_body

NUL = "\x00"


@pytest.fixture
def as_superuser(superuser) -> APIClient:
    api = APIClient()
    api.force_authenticate(superuser)
    return api


@pytest.fixture
def as_operator(operator_a) -> APIClient:
    api = APIClient()
    api.force_authenticate(operator_a)
    return api


def test_an_operator_simulating_with_a_nul_in_the_tenant_gets_a_400_naming_it(as_operator, route_a):
    response = as_operator.post(
        "/api/v1/simulate", {"tenant": f"tenant-a{NUL}", "callee": "33612345678"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"tenant": [NUL_MESSAGE]}


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/carriers", {"tenant": f"a{NUL}", "name": "Carrier X"}),
        ("/api/v1/prefixes", {"tenant": f"a{NUL}", "prefix": "33"}),
        ("/api/v1/tenant-sources", {"tenant": f"a{NUL}", "network": "203.0.113.0/24"}),
    ],
)
def test_a_superuser_writing_a_nul_tenant_gets_a_400_naming_it(as_superuser, tenant_a, url, body):
    response = as_superuser.post(url, body, format="json")

    assert response.status_code == 400
    assert response.json() == {"tenant": [NUL_MESSAGE]}


def test_a_nul_deep_in_a_body_is_named_by_its_path(as_superuser, tenant_a, trunks_a):
    body = {"tenant": "tenant-a", "prefix": "44", "targets": [{"trunk": trunks_a[0].pk}]}
    body["targets"].append({"trunk": trunks_a[1].pk, "note": f"x{NUL}"})

    response = as_superuser.post("/api/v1/prefixes", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"targets": {"1": {"note": [NUL_MESSAGE]}}}


def test_a_nul_in_a_key_is_refused_too(as_superuser, tenant_a):
    body = {"tenant": "tenant-a", "name": "X", f"name{NUL}": "Y"}

    response = as_superuser.post("/api/v1/carriers", body, format="json")

    assert response.status_code == 400
    assert response.json() == {f"name{NUL}": [NUL_KEY_MESSAGE]}


def test_a_browsable_api_form_with_a_nul_gets_a_400_naming_the_field(as_superuser, tenant_a):
    for form_format in ("multipart", None):
        data = {"tenant": f"tenant-a{NUL}", "name": "X"}
        if form_format is None:  # application/x-www-form-urlencoded
            response = as_superuser.post(
                "/api/v1/carriers",
                "tenant=tenant-a%00&name=X",
                content_type="application/x-www-form-urlencoded",
            )
        else:
            response = as_superuser.post("/api/v1/carriers", data, format=form_format)

        assert response.status_code == 400, form_format
        assert response.json() == {"tenant": [NUL_MESSAGE]}, form_format


@pytest.mark.parametrize(
    "query",
    [
        {"tenant": NUL},
        {"search": f"Carrier{NUL}"},
        {"name": NUL},
        {f"tenant{NUL}": "x"},
    ],
)
def test_a_nul_in_an_api_query_parameter_is_a_400_naming_it(as_operator, trunks_a, query):
    response = as_operator.get("/api/v1/carriers", query)

    assert response.status_code == 400
    (name,) = query
    expected = NUL_KEY_MESSAGE if NUL in name else NUL_MESSAGE
    assert response.json() == {name: [expected]}


def test_a_nul_in_the_path_is_a_400(as_operator, trunks_a):
    response = as_operator.get("/api/v1/carriers/%00/")

    assert response.status_code == 400
    assert response.json() == {"path": [NUL_MESSAGE]}


def test_rtjson_refuses_a_nul_in_a_field_in_drfs_shape(post_call, route_a):
    response = post_call(call_body(from_uri=f"sip:alice{NUL}@pbx.example.net"))

    assert response.status_code == 400
    assert response.json() == {"from_uri": [NUL_MESSAGE]}


def test_rtjson_still_routes_a_plain_call(post_call, route_a):
    response = post_call()

    assert response.status_code == 200
    assert response.json()["rtjson"]["success"] is True


def test_rtjson_with_a_form_content_type_and_a_percent_zero_zero_is_still_json(
    client, kamailio_key, route_a
):
    """Kamailio's libcurl may label the JSON a form: %00 there is text, not a NUL."""
    body = json.dumps(call_body(from_name="Alice %00"))

    response = client.post(
        "/api/v1/kamailio/rtjson",
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Token {kamailio_key}",
    )

    assert response.status_code == 200
    assert response.json()["rtjson"]["success"] is True


@pytest.mark.parametrize(
    "url",
    [
        "/admin/routing/dialprefix/?prefix=%00",
        "/admin/routing/dialprefix/?q=%00",
        "/admin/routing/carrier/?tenant__slug__exact=%00",
        "/admin/autocomplete/?term=%00&app_label=routing&model_name=routetarget&field_name=trunk",
    ],
)
def test_the_admin_answers_a_nul_in_a_query_parameter_with_a_400_naming_it(
    client, superuser, route_a, url
):
    client.force_login(superuser)

    response = client.get(url)

    assert response.status_code == 400
    name = url.split("?")[1].split("=")[0]
    assert f"(field {name!r})" in response.content.decode()


def test_an_admin_form_post_with_a_nul_is_a_400_naming_the_field(client, superuser, tenant_a):
    client.force_login(superuser)

    response = client.post(
        "/admin/routing/carrier/add/", {"tenant": tenant_a.pk, "name": f"X{NUL}"}
    )

    assert response.status_code == 400
    assert "(field 'name')" in response.content.decode()


def test_the_tenant_field_refuses_a_nul_before_it_queries(superuser, tenant_a, rf):
    request = rf.post("/")
    request.user = superuser
    serializer = CarrierSerializer(
        data={"tenant": f"a{NUL}", "name": "X"}, context={"request": request}
    )

    assert not serializer.is_valid()
    assert serializer.errors["tenant"] == [NUL_MESSAGE]


@pytest.mark.parametrize(
    ("document", "errors"),
    [
        ("plain", None),
        (f"a{NUL}", [NUL_MESSAGE]),
        ({"a": [1, "x", {"b": NUL}]}, {"a": {2: {"b": [NUL_MESSAGE]}}}),
        ({NUL: 1}, {NUL: [NUL_KEY_MESSAGE]}),
        ([None, True, 1.5], None),
    ],
)
def test_nul_errors_name_the_path(document, errors):
    assert nul_errors(document) == errors


def test_a_top_level_string_with_a_nul_is_a_non_field_error():
    from rest_framework.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        parse_json(b'["\\u0000"]', max_bytes=None)

    assert caught.value.detail == {"non_field_errors": [NUL_MESSAGE]}


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    assert parse_json(b'{"a": "\\\\u0000"}', max_bytes=None) == {"a": "\\u0000"}
