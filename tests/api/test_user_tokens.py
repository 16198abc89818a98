"""Users' API tokens: stored as digests only, expiring, revocable; sessions still work."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import UserToken, hash_key, issue_user_token

pytestmark = pytest.mark.django_db

LOGIN_URL = "/api/v1/auth/token"


def login(client, username: str, **extra):
    return client.post(LOGIN_URL, {"username": username, "password": "pw"}, **extra)


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_login_answers_a_key_and_its_expiry_and_stores_only_its_digest(client, operator_a):
    answer = login(client, "operator-a").json()

    row = UserToken.objects.values().get(user=operator_a)
    history = list(UserToken.history.values())
    assert with_key(answer["token"]).get("/api/v1/carriers").status_code == 200
    assert row["key_digest"] == hash_key(answer["token"])
    assert answer["token"] not in repr(row)
    assert answer["token"] not in repr(history)
    assert "key_digest" not in history[0]
    assert answer["expiry"]


def test_the_stored_digest_is_not_itself_a_key(operator_a, route_a):
    _, token = issue_user_token(user=operator_a)

    assert with_key(token.key_digest).get("/api/v1/carriers").status_code == 401


def test_a_token_expires_after_user_token_ttl(settings, operator_a):
    settings.USER_TOKEN_TTL = timedelta(hours=2)
    key, token = issue_user_token(user=operator_a)
    assert timedelta(hours=1, minutes=59) < token.expires_at - timezone.now() <= timedelta(hours=2)

    UserToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = with_key(key).get("/api/v1/carriers")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or expired token."


def test_logging_in_again_clears_the_users_expired_tokens(operator_a, outsider):
    _, old = issue_user_token(user=operator_a, ttl=timedelta(seconds=-1))
    _, others = issue_user_token(user=outsider, ttl=timedelta(seconds=-1))

    issue_user_token(user=operator_a)

    assert not UserToken.objects.filter(pk=old.pk).exists()
    assert UserToken.objects.filter(pk=others.pk).exists()


def test_logout_revokes_the_token_it_is_sent_with_and_only_that_one(operator_a):
    key, _ = issue_user_token(user=operator_a)
    other_key, _ = issue_user_token(user=operator_a)

    response = with_key(key).post("/api/v1/auth/logout")

    assert response.status_code == 204
    assert with_key(key).get("/api/v1/carriers").status_code == 401
    assert with_key(other_key).get("/api/v1/carriers").status_code == 200


def test_logout_all_revokes_every_token_of_the_user_and_no_one_elses(operator_a, outsider):
    keys = [issue_user_token(user=operator_a)[0] for _ in range(3)]
    outsider_key, _ = issue_user_token(user=outsider)

    response = with_key(keys[0]).post("/api/v1/auth/logout-all")

    assert response.status_code == 204
    assert [with_key(k).get("/api/v1/carriers").status_code for k in keys] == [401] * 3
    assert with_key(outsider_key).get("/api/v1/carriers").status_code == 200


def test_revocations_are_in_the_history_with_who(operator_a):
    key, token = issue_user_token(user=operator_a)

    with_key(key).post("/api/v1/auth/logout-all")

    deleted = UserToken.history.get(id=token.pk, history_type="-")
    assert deleted.history_user == operator_a


def test_an_inactive_users_token_is_401(operator_a):
    key, _ = issue_user_token(user=operator_a)
    operator_a.is_active = False
    operator_a.save()

    assert with_key(key).get("/api/v1/carriers").status_code == 401


def test_an_inactive_user_gets_no_token(client, operator_a):
    operator_a.is_active = False
    operator_a.save()

    assert login(client, "operator-a").status_code == 400
    assert not UserToken.objects.exists()


def test_the_browsable_api_still_works_with_an_admin_session(client, operator_a, route_a):
    client.force_login(operator_a)

    listing = client.get("/api/v1/prefixes", HTTP_ACCEPT="application/json")

    assert listing.status_code == 200
    assert listing.json()["count"] == 1


def test_the_outsider_token_sees_none_of_tenant_as_rows(outsider, route_a, route_b):
    key, _ = issue_user_token(user=outsider)

    rows = with_key(key).get("/api/v1/prefixes").json()["results"]

    assert [row["tenant"] for row in rows] == ["tenant-b"]


class _SchemaEditor:
    """What the migration function uses of a schema editor, without its SQLite guard."""

    def __init__(self) -> None:
        self.connection = connection

    def quote_name(self, name: str) -> str:
        return connection.ops.quote_name(name)

    def execute(self, sql: str, params=()) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def test_the_migration_drops_drf_clear_text_tokens(operator_a):
    from importlib import import_module

    migration = import_module("api.migrations.0002_user_tokens_and_history")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY)")
        cursor.execute("INSERT INTO authtoken_token (key) VALUES ('0123456789abcdef')")
    ContentType.objects.create(app_label="authtoken", model="token")

    migration.drop_clear_user_tokens(apps, _SchemaEditor())

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not ContentType.objects.filter(app_label="authtoken").exists()
