"""Logins: lockout after repeated failures (admin and API alike), throttling, logging."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import SESSION_KEY
from rest_framework.throttling import ScopedRateThrottle

from api.models import UserToken

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token"
ADMIN_LOGIN = "/admin/login/?next=/admin/"
HOME = "203.0.113.9"


@pytest.fixture
def no_throttle(monkeypatch):
    """The lockout alone (the throttle would answer 429 first)."""
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "login", "10000/min")


def admin_login(client, username: str, password: str, address: str = HOME):
    return client.post(
        ADMIN_LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address
    )


def token_login(client, username: str, password: str, address: str = HOME, **extra):
    return client.post(
        TOKEN_URL, {"username": username, "password": password}, REMOTE_ADDR=address, **extra
    )


def test_the_right_admin_password_after_ten_wrong_ones_is_refused(client, superuser, settings):
    assert settings.AXES_FAILURE_LIMIT == 10
    answers = [admin_login(client, "root", "wrong").status_code for _ in range(10)]

    response = admin_login(client, "root", "pw")

    assert answers == [200] * 9 + [429]  # the form again, then the lockout
    assert response.status_code == 429
    assert SESSION_KEY not in client.session
    page = response.content.decode()
    assert 'id="login-form"' in page
    assert "Too many failed logins for this user name from your address" in page
    assert "15 minutes" in page


def test_the_token_endpoint_locks_out_the_same_way(client, operator_a, no_throttle):
    answers = [token_login(client, "operator-a", "wrong").status_code for _ in range(10)]

    response = token_login(client, "operator-a", "pw")

    assert answers == [400] * 9 + [429]
    assert response.status_code == 429
    assert "Too many failed logins" in response.json()["detail"]
    assert int(response["Retry-After"]) == 15 * 60
    assert not UserToken.objects.exists()


def test_failures_on_the_admin_lock_the_api_login_too(client, operator_a, no_throttle):
    for _ in range(10):
        admin_login(client, "operator-a", "wrong")

    assert token_login(client, "operator-a", "pw").status_code == 429


def test_a_lockout_holds_one_user_at_one_address_only(client, operator_a, outsider, no_throttle):
    """Operators behind one NAT share an address: one's lockout is not the others'."""
    for _ in range(10):
        token_login(client, "operator-a", "wrong")

    assert token_login(client, "operator-a", "pw").status_code == 429
    assert token_login(client, "outsider", "pw").status_code == 200
    assert token_login(client, "operator-a", "pw", address="198.51.100.20").status_code == 200


def test_a_success_before_the_limit_starts_the_count_again(client, operator_a, no_throttle):
    for _ in range(9):
        token_login(client, "operator-a", "wrong")
    assert token_login(client, "operator-a", "pw").status_code == 200

    for _ in range(9):
        token_login(client, "operator-a", "wrong")

    assert token_login(client, "operator-a", "pw").status_code == 200


def test_the_cool_off_ends_the_lockout(client, operator_a, no_throttle, settings):
    from axes.models import AccessAttempt
    from django.utils import timezone

    for _ in range(10):
        token_login(client, "operator-a", "wrong")
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME)

    assert token_login(client, "operator-a", "pw").status_code == 200


def test_the_token_endpoint_allows_ten_attempts_a_minute_per_address(client, operator_a):
    answers = [token_login(client, f"guess-{n}", "wrong").status_code for n in range(10)]

    throttled = token_login(client, "operator-a", "pw")

    assert answers == [400] * 10
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert token_login(client, "operator-a", "pw", address="198.51.100.20").status_code == 200


def test_a_forged_forwarded_for_does_not_escape_the_throttle(client, operator_a):
    for n in range(10):
        token_login(client, f"guess-{n}", "wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    response = token_login(client, "operator-a", "pw", HTTP_X_FORWARDED_FOR="10.9.9.9")

    assert response.status_code == 429


def test_behind_a_proxy_the_forwarded_address_counts(client, operator_a, no_throttle, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    for _ in range(10):
        token_login(client, "operator-a", "wrong", HTTP_X_FORWARDED_FOR="192.0.2.50")

    locked = token_login(client, "operator-a", "pw", HTTP_X_FORWARDED_FOR="192.0.2.50")
    other = token_login(client, "operator-a", "pw", HTTP_X_FORWARDED_FOR="192.0.2.51")

    assert (locked.status_code, other.status_code) == (429, 200)


def test_failed_logins_are_logged_with_user_name_and_address_but_no_password(
    client, operator_a, caplog, no_throttle
):
    with caplog.at_level(logging.INFO, logger="axes"):
        admin_login(client, "operator-a", "s3cret-guess-1")
        token_login(client, "operator-a", "s3cret-guess-2")

    failures = [r.getMessage() for r in caplog.records if "login failure" in r.getMessage()]
    assert len(failures) == 2
    for message in failures:
        assert 'username: "operator-a"' in message
        assert f'ip_address: "{HOME}"' in message
    assert "s3cret-guess" not in caplog.text


def test_a_lockout_is_logged(client, operator_a, caplog, no_throttle):
    with caplog.at_level(logging.WARNING, logger="axes"):
        for _ in range(10):
            token_login(client, "operator-a", "wrong")

    assert any("Locking out" in r.getMessage() for r in caplog.records)
