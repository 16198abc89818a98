"""A staged plan in a real browser: edit a route, review the diff, run the route tests,
publish with a comment, roll back. Tenant B's plan is published too; none of it shows."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from routing.resolver import CallRequest
from routing.service import decide
from tests.factories import default_plan, make_operator, make_route, make_tenant, make_trunk
from versions.models import PlanVersion, RouteTest
from versions.publishing import publish

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

B_SECRETS = ("Carrier B", "b-primary", "b-backup", "France via B", "Tenant B")


@pytest.fixture
def staged():
    acme = make_tenant("acme", "192.0.2.0/24", name="Acme Telecom")
    globex = make_tenant("globex", "198.51.100.0/24", name="Tenant B")
    route = make_route(
        acme,
        "33",
        make_trunk(acme, "nw-paris", carrier="Northwind"),
        make_trunk(acme, "nw-lyon", carrier="Northwind"),
        description="France",
    )
    make_route(
        globex,
        "33",
        make_trunk(globex, "b-primary", carrier="Carrier B"),
        make_trunk(globex, "b-backup", carrier="Carrier B"),
        description="France via B",
    )
    plan = default_plan(acme)
    operator = make_operator("acme-operator", acme)
    publish(plan, user=operator, comment="Initial table")
    publish(default_plan(globex), comment="Tenant B's own")
    RouteTest.objects.create(
        tenant=acme,
        plan=plan,
        name="France is routed",
        callee="33123456789",
        expect_outcome="routed",
    )
    return plan, route


def first_trunk() -> str:
    decision = decide(CallRequest(callee="33123456789", source_ip="192.0.2.10", call_id="x"))
    return decision.routes[0].trunk


def assert_no_secret(page: Page) -> None:
    text = page.content()
    for secret in B_SECRETS:
        assert secret not in text, f"{secret!r} leaked into {page.url}"


def test_an_operator_reviews_publishes_and_rolls_back_a_draft(page: Page, staged, artifacts):
    plan, route = staged
    page.goto("/admin/login/")
    page.fill("#id_username", "acme-operator")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    expect(page.locator("#operations-module")).to_contain_text("Versions")

    # Edit the draft: swap the two targets' priorities.
    page.goto(f"/admin/routing/dialprefix/{route.pk}/change/")
    first = page.input_value("#id_targets-0-priority")
    second = page.input_value("#id_targets-1-priority")
    page.fill("#id_targets-0-priority", second)
    page.fill("#id_targets-1-priority", first)
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert first_trunk() == "nw-paris"  # calls keep version 1

    # The plan's Versions page, from the plan list: the diff names the trunks.
    page.goto("/admin/routing/routingplan/")
    page.get_by_role("link", name="live: version 1").click()
    expect(page.locator("#plan-state")).to_contain_text("version 1")
    diff = page.locator("#diff-table")
    expect(diff).to_contain_text("changed")
    expect(diff).to_contain_text("Northwind/nw-paris (2, 100)")
    expect(diff).to_contain_text("targets")
    assert_no_secret(page)

    # The route tests against the draft.
    page.click("#run-tests")
    expect(page.locator("#test-results")).to_contain_text("France is routed")
    expect(page.locator("#test-results")).to_contain_text("passed")
    page.screenshot(path=str(artifacts / "versions.png"), full_page=True)

    # Publish with a comment.
    page.fill("#id_comment", "Lyon first while Paris is maintained")
    page.click("#publish-button")
    expect(page.locator(".messagelist")).to_contain_text("Published version 2 of plan Default")
    expect(page.locator("#version-2")).to_contain_text("Lyon first while Paris is maintained")
    expect(page.locator("#version-2")).to_contain_text("acme-operator")
    expect(page.locator("#draft-unchanged")).to_be_visible()
    assert first_trunk() == "nw-lyon"
    assert_no_secret(page)

    # Roll back to version 1: the confirmation shows what changes, then it is done.
    page.locator("#version-1 .rollback-link").click()
    expect(page.locator("#diff-table")).to_contain_text("Northwind/nw-paris (1, 100)")
    page.fill("#id_comment", "Paris is back")
    page.click("#rollback-button")
    expect(page.locator(".messagelist")).to_contain_text("it is now version 3")
    expect(page.locator("#version-3")).to_contain_text("rollback of 1")
    assert first_trunk() == "nw-paris"
    assert PlanVersion.objects.get(plan=plan, number=3).comment == "Paris is back"
