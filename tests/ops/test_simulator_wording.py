"""The simulator's wording: where the tenant came from, and the default route named once."""

from __future__ import annotations

from tests.factories import make_route

URL = "/admin/simulator/"


def trace_of(response) -> list[str]:
    assert response.status_code == 200
    return response.context["trace"]


def test_without_a_tenant_the_trace_says_the_operators_own_was_taken(client, operator_a, route_a):
    client.force_login(operator_a)
    trace = trace_of(client.get(URL, {"callee": "33612345678"}))
    assert "tenant tenant-a: yours (no source IP, tenant, customer or plan was given)" in trace
    assert not any("given explicitly" in step for step in trace)


def test_a_tenant_chosen_in_the_form_is_still_given_explicitly(client, superuser, route_a):
    client.force_login(superuser)
    trace = trace_of(client.get(URL, {"callee": "33612345678", "tenant": route_a.tenant.slug}))
    assert "tenant tenant-a given explicitly" in trace


def test_the_default_route_is_named_once(client, operator_a, trunks_a):
    make_route(operator_a.tenant, "", trunks_a[0], description="Default route")
    client.force_login(operator_a)
    body = client.get(URL, {"callee": "4912345"}).content.decode()
    assert "(default route)</strong>" in body
    assert "(Default route)" not in body


def test_an_outsider_simulating_without_a_tenant_gets_their_own(client, outsider, route_a):
    client.force_login(outsider)
    response = client.get(URL, {"callee": "33612345678"})
    trace = trace_of(response)
    assert "tenant tenant-b: yours (no source IP, tenant, customer or plan was given)" in trace
    assert "France via A" not in response.content.decode()
