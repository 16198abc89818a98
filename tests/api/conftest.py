"""Fixtures of the API suites: a Kamailio token and a poster for the routing endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from api.models import KamailioToken

RTJSON_URL = "/api/v1/kamailio/rtjson"


def call_body(**fields: Any) -> dict[str, Any]:
    """A routing request as Kamailio's config builds it: a call from tenant A's PBX.

    Keyword arguments replace fields; a field given as `...` is left out.
    """
    body = {
        "event": "sip-routing",
        "source_ip": "192.0.2.7",
        "source_port": 5060,
        "call_id": "a84b4c76e66710@pbx.example.net",
        "from_name": "Alice",
        "from_uri": "sip:+33123456789@pbx.example.net",
        "from_tag": "1928301774",
        "to_name": "",
        "to_uri": "sip:+33612345678@sbc.example.net",
        "to_tag": "",
        "ruri": "sip:+33612345678@sbc.example.net",
    }
    body.update(fields)
    return {name: value for name, value in body.items() if value is not ...}


def make_token(
    name: str = "kamailio-1", *networks: str, **fields: Any
) -> tuple[str, KamailioToken]:
    token = KamailioToken(name=name, allowed_networks="\n".join(networks), **fields)
    key = token.set_new_key()
    token.full_clean()
    token.save()
    return key, token


@pytest.fixture
def kamailio_key(db) -> str:
    return make_token()[0]


@pytest.fixture
def post_call(client, kamailio_key) -> Callable[..., Any]:
    """POST a body (dict → JSON, bytes as they are) to the endpoint as Kamailio does."""

    def post(body: Any = None, *, key: str | None = kamailio_key, url: str = RTJSON_URL, **extra):
        payload = body if isinstance(body, bytes | str) else json.dumps(body or call_body())
        headers = {"HTTP_AUTHORIZATION": f"Token {key}"} if key else {}
        headers.setdefault("REMOTE_ADDR", "127.0.0.1")
        headers.update(extra)
        return client.post(url, payload, content_type="application/json", **headers)

    return post
