"""manage.py create_kamailio_token: prints only the key, which then works."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from api.models import KamailioToken
from tests.api.conftest import RTJSON_URL, call_body

pytestmark = pytest.mark.django_db


def create(*args: str) -> str:
    out = StringIO()
    call_command("create_kamailio_token", *args, stdout=out)
    return out.getvalue()


def test_it_prints_only_the_key_which_authenticates_kamailio(client, route_a):
    output = create("kamailio-1")

    key = output.strip()
    assert output == key + "\n"
    assert " " not in key
    assert len(key) >= 40
    response = client.post(
        RTJSON_URL, call_body(), content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert response.json()["rtjson"]["success"] is True


def test_it_limits_the_token_to_the_given_networks_normalised():
    create("edge", "--network", "10.1.0.0/16", "--network", "2001:DB8::/32")

    token = KamailioToken.objects.get(name="edge")
    assert token.networks == ["10.1.0.0/16", "2001:db8::/32"]
    assert token.allows_address("10.1.9.9")
    assert not token.allows_address("10.2.0.1")


def test_a_bad_network_is_a_clear_error_and_creates_nothing():
    with pytest.raises(CommandError, match=r"--network: '10\.0\.0\.1/8' has host bits set"):
        create("edge", "--network", "10.0.0.1/8")

    assert not KamailioToken.objects.exists()


def test_a_duplicate_name_is_a_clear_error():
    create("edge")

    with pytest.raises(CommandError, match="already exists"):
        create("edge")
