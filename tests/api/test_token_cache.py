"""Kamailio tokens are kept per process for a bounded time, then looked up again."""

from __future__ import annotations

import time

import pytest

from api.authentication import TOKENS
from api.models import KamailioToken
from tests.api.conftest import call_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached(settings):
    TOKENS.clear()
    settings.KAMAILIO_TOKEN_CACHE_SECONDS = 0.3
    yield
    TOKENS.clear()


def test_a_known_token_costs_no_query_while_cached(
    cached, post_call, route_a, django_assert_num_queries
):
    assert post_call(call_body()).status_code == 200
    with django_assert_num_queries(5):  # the five routing lookups, no token query
        response = post_call(call_body())
    assert response.json()["rtjson"]["success"] is True


def test_a_deactivated_token_is_refused_once_its_entry_expires(cached, post_call, route_a):
    assert post_call(call_body()).status_code == 200
    KamailioToken.objects.update(is_active=False)
    time.sleep(0.5)
    response = post_call(call_body())
    assert response.status_code == 401
    assert "rtjson" not in response.json()


def test_wrong_keys_are_remembered_too(cached, post_call, route_a, django_assert_num_queries):
    assert post_call(call_body(), key="not-a-key").status_code == 401
    with django_assert_num_queries(0):
        assert post_call(call_body(), key="not-a-key").status_code == 401


def test_without_the_cache_every_request_looks_the_token_up(
    settings, post_call, route_a, django_assert_num_queries
):
    settings.KAMAILIO_TOKEN_CACHE_SECONDS = 0
    post_call(call_body())
    with django_assert_num_queries(6):
        post_call(call_body())
