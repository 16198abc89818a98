"""The OpenAPI schema and its offline docs page; the token admins (superusers only)."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

from api.models import KamailioToken, UserToken, hash_key, issue_user_token

pytestmark = pytest.mark.django_db


def test_the_schema_renders_validates_and_pins_the_kamailio_path(client, operator_a):
    client.force_login(operator_a)

    response = client.get("/api/v1/schema")

    schema = yaml.safe_load(response.content)
    assert response.status_code == 200
    validate_schema(schema)
    assert "/api/v1/kamailio/rtjson" in schema["paths"]
    assert "/api/v1/prefixes/{id}/" in schema["paths"]
    assert "kamailioToken" in schema["components"]["securitySchemes"]
    assert "userToken" in schema["components"]["securitySchemes"]


def test_the_docs_page_loads_no_external_asset(client, operator_a):
    client.force_login(operator_a)

    response = client.get("/api/v1/docs")

    html = response.content.decode()
    assert response.status_code == 200
    assert "swagger-ui" in html
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//[^"']+""", html)
    assert external == []
    assert "cdn" not in html.lower()


def test_the_docs_assets_are_served_locally(client, operator_a):
    client.force_login(operator_a)
    html = client.get("/api/v1/docs").content.decode()
    scripts = re.findall(r"""<script src="([^"]+)""", html)

    assert scripts
    for src in scripts:
        assert src.startswith("/static/"), src
        assert finders.find(src.removeprefix("/static/")), f"{src} is not shipped"


def test_the_browsable_api_renders_with_its_filter_form(client, operator_a, route_a):
    client.force_login(operator_a)

    response = client.get("/api/v1/prefixes", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert "France via A" in response.content.decode()


def test_adding_a_kamailio_token_in_the_admin_shows_its_key_once(client, superuser):
    client.force_login(superuser)

    response = client.post(
        "/admin/api/kamailiotoken/add/",
        {"name": "edge", "allowed_networks": "10.1.0.0/16\n2001:DB8::/32", "is_active": "on"},
        follow=True,
    )

    token = KamailioToken.objects.get(name="edge")
    shown = re.search(r"The key of edge is (\S+)", response.content.decode())
    assert shown is not None
    assert hash_key(shown.group(1)) == token.key_digest
    assert token.networks == ["10.1.0.0/16", "2001:db8::/32"]
    listing = client.get("/admin/api/kamailiotoken/").content.decode()
    assert "10.1.0.0/16, 2001:db8::/32" in listing
    assert shown.group(1) not in listing


def test_a_bad_network_in_the_admin_is_a_form_error(client, superuser):
    client.force_login(superuser)

    response = client.post(
        "/admin/api/kamailiotoken/add/", {"name": "edge", "allowed_networks": "10.0.0.1/8"}
    )

    assert response.status_code == 200
    assert "has host bits set" in response.content.decode()
    assert not KamailioToken.objects.exists()


def test_tenant_operators_cannot_see_either_token_admin(client, operator_a, superuser):
    _, token = issue_user_token(user=superuser)
    client.force_login(operator_a)

    kamailio = client.get("/admin/api/kamailiotoken/")
    user_tokens = client.get("/admin/api/usertoken/")
    history = client.get(f"/admin/api/usertoken/{token.pk}/history/")

    assert (kamailio.status_code, user_tokens.status_code, history.status_code) == (403,) * 3


def test_a_superuser_sees_and_revokes_users_api_tokens_in_the_admin(client, superuser, operator_a):
    key, token = issue_user_token(user=operator_a)
    client.force_login(superuser)

    listing = client.get("/admin/api/usertoken/")
    revoked = client.post(f"/admin/api/usertoken/{token.pk}/delete/", {"post": "yes"})

    assert listing.status_code == 200
    assert "operator-a" in listing.content.decode()
    assert key not in listing.content.decode()
    assert revoked.status_code == 302
    assert not UserToken.objects.exists()


def test_users_api_tokens_are_not_made_in_the_admin(client, superuser):
    client.force_login(superuser)

    assert client.get("/admin/api/usertoken/add/").status_code == 403


@pytest.mark.parametrize("who", ["superuser", "operator_a"])
def test_the_schema_generates_without_warnings_for_any_user(client, request, who):
    # drf-spectacular prints each message once per process but counts every one: start
    # from zero so a message another test already printed still fails this one.
    client.force_login(request.getfixturevalue(who))
    GENERATOR_STATS.reset()

    response = client.get("/api/v1/schema")

    assert response.status_code == 200
    assert dict(GENERATOR_STATS._warn_cache) == {}
    assert dict(GENERATOR_STATS._error_cache) == {}
    validate_schema(yaml.safe_load(response.content))


def test_the_schema_and_the_docs_page_need_a_login(client):
    schema = client.get("/api/v1/schema")
    docs = client.get("/api/v1/docs")

    assert schema.status_code == 401
    assert "paths" not in schema.content.decode()
    assert docs.status_code == 302
    assert docs["Location"] == "/admin/login/?next=/api/v1/docs"


def test_the_schema_opens_with_an_api_token(operator_a):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_user_token(user=operator_a)[0]}")

    assert client.get("/api/v1/schema").status_code == 200
