"""The Content-Security-Policy header: on every response, inline scripts on one page only."""

from __future__ import annotations

import pytest


def directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


@pytest.mark.parametrize(
    "url", ["/admin/login/", "/admin/", "/admin/simulator/", "/api/v1/tenants", "/healthz"]
)
def test_every_response_carries_a_policy_without_inline_scripts(client, superuser, url):
    client.force_login(superuser)

    policy = directives(client.get(url))

    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_the_swagger_page_alone_may_run_its_inline_init_script(client, superuser):
    client.force_login(superuser)

    response = client.get("/api/v1/docs")

    assert response.status_code == 200
    assert directives(response)["script-src"] == ["'self'", "'unsafe-inline'"]
