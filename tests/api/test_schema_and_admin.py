"""The OpenAPI schema and its offline docs page; the token admins (superusers only)."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema
from rest_framework.authtoken.models import Token

from api.models import KamailioToken, hash_key

pytestmark = pytest.mark.django_db


def test_the_schema_renders_validates_and_pins_the_kamailio_path(client):
    response = client.get("/api/v1/schema")

    schema = yaml.safe_load(response.content)
    assert response.status_code == 200
    validate_schema(schema)
    assert "/api/v1/kamailio/rtjson" in schema["paths"]
    assert "/api/v1/prefixes/{id}/" in schema["paths"]
    assert "kamailioToken" in schema["components"]["securitySchemes"]


def test_the_docs_page_loads_no_external_asset(client):
    response = client.get("/api/v1/docs")

    html = response.content.decode()
    assert response.status_code == 200
    assert "swagger-ui" in html
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//[^"']+""", html)
    assert external == []
    assert "cdn" not in html.lower()


def test_the_docs_assets_are_served_locally(client):
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
    Token.objects.create(user=superuser)
    client.force_login(operator_a)

    kamailio = client.get("/admin/api/kamailiotoken/")
    user_tokens = client.get("/admin/authtoken/tokenproxy/")

    assert (kamailio.status_code, user_tokens.status_code) == (403, 403)


def test_a_superuser_manages_users_api_tokens_in_the_admin(client, superuser, operator_a):
    client.force_login(superuser)

    added = client.post("/admin/authtoken/tokenproxy/add/", {"user": operator_a.pk})

    assert added.status_code == 302
    assert Token.objects.filter(user=operator_a).exists()
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 200


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
