"""An operator's first hour, in a real browser: carrier, trunks, a route, a simulation.

Tenant B exists alongside with its own carrier and a route for the same prefix; at
every step tenant A's operator must see none of it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from routing.models import DialPrefix
from tests.factories import make_operator, make_route, make_tenant, make_trunk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

B_SECRETS = ("Carrier B", "b-primary", "b-backup", "France via B", "Tenant B")


@pytest.fixture
def tenants():
    acme = make_tenant("acme", "192.0.2.0/24", name="Acme Telecom")
    globex = make_tenant("globex", "198.51.100.0/24", name="Tenant B")
    make_route(
        globex,
        "33",
        make_trunk(globex, "b-primary", carrier="Carrier B", host="198.51.100.101"),
        make_trunk(globex, "b-backup", carrier="Carrier B"),
        description="France via B",
    )
    make_operator("acme-operator", acme)
    return acme, globex


def log_in(page: Page, username: str) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def assert_no_secret(page: Page) -> None:
    text = page.content()
    for secret in B_SECRETS:
        assert secret not in text, f"{secret!r} leaked into {page.url}"


def pick_trunk(page: Page, row: int, search: str, choice: str) -> None:
    """Choose a trunk in the autocomplete of target row `row`, as a user does."""
    page.locator(f"#targets-{row} .select2-selection").click()
    search_box = page.locator(".select2-container--open .select2-search__field")
    search_box.fill(search)
    option = page.locator(".select2-results__option", has_text=choice)
    expect(option).to_be_visible()
    option.click()
    expect(page.locator(f"#targets-{row} .select2-selection__rendered")).to_contain_text(choice)


def test_an_operator_builds_a_route_and_simulates_a_call(page: Page, tenants, artifacts):
    log_in(page, "acme-operator")
    expect(page.locator("#operations-module")).to_contain_text("Route simulator")

    # A carrier with two trunks, added inline.
    page.goto("/admin/routing/carrier/")
    assert_no_secret(page)
    page.goto("/admin/routing/carrier/add/")
    page.fill("#id_name", "Northwind")
    for index, (name, host) in enumerate(
        [("nw-paris", "sip.paris.northwind.example"), ("nw-lyon", "sip.lyon.northwind.example")]
    ):
        page.get_by_text("Add another Trunk").click()
        page.fill(f"#id_trunks-{index}-name", name)
        page.fill(f"#id_trunks-{index}-host", host)
        page.fill(f"#id_trunks-{index}-port", "5060")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator("#result_list")).to_contain_text("2/2 active")
    assert_no_secret(page)
    page.screenshot(path=str(artifacts / "carriers.png"))

    # A route for France with two targets, trunks picked through the autocomplete.
    page.goto("/admin/routing/dialprefix/add/")
    page.fill("#id_prefix", "33")
    page.fill("#id_description", "France")
    page.get_by_text("Add another Route target").click()
    page.locator("#targets-0 .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill("b-")
    expect(page.locator(".select2-results__option")).to_have_text(["No results found"])
    page.keyboard.press("Escape")
    pick_trunk(page, 0, "paris", "nw-paris")
    page.get_by_text("Add another Route target").click()
    pick_trunk(page, 1, "lyon", "nw-lyon")
    page.fill("#id_targets-1-priority", "2")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    row = page.locator("#result_list tbody tr", has_text="France")
    expect(row).to_contain_text(re.compile(r"nw-paris\s*→\s*nw-lyon"))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert_no_secret(page)
    page.screenshot(path=str(artifacts / "prefixes.png"))

    # The prefix page links to the simulator, prefilled: the routes show at once.
    prefix = DialPrefix.objects.get(tenant__slug="acme", prefix="33")
    page.goto(f"/admin/routing/dialprefix/{prefix.pk}/change/")
    page.get_by_text("Simulate a call").click()
    expect(page.locator("#sim-outcome")).to_contain_text("routed")

    # The simulator, filled in by hand.
    page.goto("/admin/simulator/")
    page.fill("#id_caller", "3312")
    page.fill("#id_callee", "+33 6 12 34 56 78")
    page.click("#simulator-form input[type=submit]")
    routes = page.locator("#sim-routes tbody tr")
    expect(routes).to_have_count(2)
    expect(routes.nth(0)).to_contain_text("Northwind / nw-paris")
    expect(routes.nth(0)).to_contain_text("sip:+33612345678@sip.paris.northwind.example:5060")
    expect(routes.nth(1)).to_contain_text("Northwind / nw-lyon")
    expect(page.locator("#sim-matched")).to_contain_text("33")
    expect(page.locator("#sim-rtjson")).to_contain_text('"routing": "serial"')
    assert_no_secret(page)
    page.screenshot(path=str(artifacts / "simulator.png"), full_page=True)

    # Tenant B's source address: answered as an unknown address is, naming no one.
    page.fill("#id_callee", "+33612345678")
    page.fill("#id_source_ip", "198.51.100.7")
    page.click("#simulator-form input[type=submit]")
    expect(page.locator("#sim-outcome")).to_contain_text("403 Forbidden")
    expect(page.locator("#sim-trace")).to_contain_text("is in no tenant's networks")
    assert_no_secret(page)
    # Tenant B's slug: not a choice.
    page.goto("/admin/simulator/?tenant=globex&callee=33612345678")
    expect(page.locator(".errorlist")).to_contain_text("Select a valid choice")
    assert_no_secret(page)

    # The autocomplete endpoint itself, asked directly for B's trunks.
    answer = page.request.get(
        "/admin/autocomplete/?term=b-&app_label=routing&model_name=routetarget&field_name=trunk"
    )
    assert answer.ok
    assert answer.json()["results"] == []

    # A trunk moves to a new host; its history says who, when, and from what.
    page.goto("/admin/routing/trunk/")
    page.get_by_role("link", name="Northwind / nw-lyon").click()
    page.fill("#id_host", "sbc.lyon.northwind.example")
    page.click("input[name=_continue]")
    page.get_by_role("link", name="History").click()
    changes = page.locator("#change-history")
    expect(changes).to_contain_text("acme-operator")
    expect(changes).to_contain_text("sip.lyon.northwind.example")
    expect(changes).to_contain_text("sbc.lyon.northwind.example")
    page.screenshot(path=str(artifacts / "history.png"))

    # Who did all this: the recent changes.
    page.goto("/admin/recent-changes/")
    table = page.locator("#recent-changes")
    expect(table).to_contain_text("acme-operator")
    expect(table).to_contain_text("nw-lyon")
    assert_no_secret(page)
    page.screenshot(path=str(artifacts / "recent-changes.png"))
