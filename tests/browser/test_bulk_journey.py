"""Changing many routes at once, in a real browser: a trunk's routes moved to another
trunk, and a bulk edit of every filtered row of the prefix list (all its pages).

Tenant B has its own carrier, trunks and routes for the same prefixes; A's operator
never sees them, and B's operator (the outsider) sees and changes nothing of A's.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from routing.models import DialPrefix, RouteTarget, Trunk
from tests.browser.test_admin_journey import log_in
from tests.factories import make_operator, make_route, make_tenant, make_trunk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

A_SECRETS = ("Northwind", "nw-paris", "nw-lyon", "UK via Northwind", "Acme Telecom")
B_SECRETS = ("Carrier B", "b-primary", "b-backup", "UK via B", "Tenant B")
UK_ROUTES = 120  # more than a page of the list (100): the bulk edit takes all pages


@pytest.fixture
def tenants():
    acme = make_tenant("acme", "192.0.2.0/24", name="Acme Telecom")
    paris = make_trunk(acme, "nw-paris", carrier="Northwind", host="sip.paris.example")
    lyon = make_trunk(acme, "nw-lyon", carrier="Northwind", host="sip.lyon.example")
    backup = make_trunk(acme, "nw-backup", carrier="Northwind", host="sip.backup.example")
    make_route(acme, "33", paris, backup, description="France")
    make_route(acme, "49", paris, description="Germany")
    make_route(acme, "39", backup, description="Italy")
    for n in range(UK_ROUTES):
        make_route(acme, f"44{n:03d}", backup, description="UK via Northwind")
    globex = make_tenant("globex", "198.51.100.0/24", name="Tenant B")
    b_primary = make_trunk(globex, "b-primary", carrier="Carrier B")
    make_route(globex, "44", b_primary, make_trunk(globex, "b-backup", carrier="Carrier B"))
    DialPrefix.objects.filter(tenant=globex).update(description="UK via B")
    make_operator("acme-operator", acme)
    make_operator("globex-operator", globex)
    return paris, lyon, b_primary


def assert_none_of(page: Page, secrets: tuple[str, ...]) -> None:
    text = page.content()
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into {page.url}"


def test_an_operator_moves_a_trunks_routes_to_another_trunk(page: Page, tenants, artifacts):
    paris, lyon, _ = tenants
    log_in(page, "acme-operator")
    page.goto(f"/admin/routing/trunk/{paris.pk}/change/")
    routes = page.locator("#trunk-routes")
    expect(routes).to_contain_text("Routes using this trunk: 2")
    expect(routes.get_by_role("link", name="33")).to_be_visible()
    expect(routes.get_by_role("link", name="49")).to_be_visible()
    assert_none_of(page, B_SECRETS)
    routes.screenshot(path=str(artifacts / "trunk-routes.png"))

    page.get_by_role("link", name="Replace this trunk…").click()
    page.select_option("#id_new_trunk", label="Northwind / nw-lyon")
    expect(page.locator("#id_new_trunk option", has_text="b-primary")).to_have_count(0)
    page.check("input[name=mode][value=failover]")
    page.click("input[name=_preview]")
    expect(page.locator("#bulk-count")).to_contain_text("2 routes will change")
    expect(page.locator("#bulk-sample")).to_contain_text("France")
    assert RouteTarget.objects.filter(trunk=lyon).count() == 0  # a preview writes nothing
    page.screenshot(path=str(artifacts / "trunk-replace-preview.png"), full_page=True)

    page.click("input[name=_apply]")
    expect(page.locator(".messagelist")).to_contain_text(
        "Added Northwind / nw-lyon as failover after Northwind / nw-paris on 2 routes."
    )
    france = DialPrefix.objects.get(tenant__slug="acme", prefix="33")
    assert [(t.trunk.name, t.priority) for t in france.targets.order_by("priority")] == [
        ("nw-paris", 1),
        ("nw-lyon", 2),
        ("nw-backup", 3),
    ]

    # Who did it: the route's history and the recent changes say so.
    page.goto("/admin/recent-changes/")
    expect(page.locator("#recent-changes")).to_contain_text("added as failover after")
    assert_none_of(page, B_SECRETS)


def test_an_outsider_sees_and_moves_nothing_of_another_tenants_trunk(page: Page, tenants):
    paris, lyon, b_primary = tenants
    log_in(page, "globex-operator")
    page.goto(f"/admin/routing/trunk/{paris.pk}/change/")
    expect(page.locator("#trunk-routes")).to_have_count(0)
    assert_none_of(page, A_SECRETS)
    answer = page.goto(f"/admin/routing/trunk/{paris.pk}/replace/")
    assert answer.status == 404
    assert_none_of(page, A_SECRETS)
    # Their own trunk: only their route, and only their trunks to choose from.
    page.goto(f"/admin/routing/trunk/{b_primary.pk}/change/")
    expect(page.locator("#trunk-routes")).to_contain_text("Routes using this trunk: 1")
    page.get_by_role("link", name="Replace this trunk…").click()
    expect(page.locator("#id_new_trunk option", has_text="nw-")).to_have_count(0)
    assert_none_of(page, A_SECRETS)
    assert RouteTarget.objects.filter(trunk__in=[paris, lyon]).count() == 2


def test_an_operator_bulk_edits_every_filtered_row_on_all_pages(page: Page, tenants, artifacts):
    _, lyon, _ = tenants
    log_in(page, "acme-operator")
    page.goto("/admin/routing/dialprefix/?q=UK")
    expect(page.locator(".paginator")).to_contain_text("2")  # two pages of the list
    export = page.locator("#export-filtered")
    assert "q=UK" in export.get_attribute("href")
    assert_none_of(page, B_SECRETS)

    page.click("#bulk-edit-filtered")
    expect(page.locator("#bulk-selection")).to_contain_text("all its pages")
    expect(page.locator("#bulk-selection")).to_contain_text("search “UK”")
    page.select_option("#id_routing_mode", "parallel")
    page.select_option("#id_target", "add")
    page.select_option("#id_trunk", label="Northwind / nw-lyon")
    page.fill("#id_priority", "2")
    page.click("input[name=_preview]")
    expect(page.locator("#bulk-count")).to_contain_text(f"{UK_ROUTES} routes will change")
    expect(page.locator("#bulk-sample")).to_contain_text("UK via Northwind")
    assert_none_of(page, B_SECRETS)
    page.screenshot(path=str(artifacts / "bulk-edit-preview.png"), full_page=True)

    page.click("input[name=_apply]")
    expect(page.locator(".messagelist")).to_contain_text(
        f"Changed {UK_ROUTES} routes of {UK_ROUTES}."
    )
    assert "q=UK" in page.url  # back to the same filtered list
    uk = DialPrefix.objects.filter(tenant__slug="acme", prefix__startswith="44")
    assert uk.filter(routing_mode="parallel").count() == UK_ROUTES
    assert RouteTarget.objects.filter(trunk=lyon, priority=2).count() == UK_ROUTES
    assert DialPrefix.objects.get(tenant__slug="globex").routing_mode == "serial"

    # Ticked rows: the action takes only them.
    page.locator("#result_list tbody tr", has_text="44000").locator(".action-select").check()
    page.select_option("select[name=action]", "bulk_edit_action")
    page.click("button[name=index]")
    expect(page.locator("#bulk-selection")).to_contain_text("The 1 ticked route")
    page.select_option("#id_is_active", "no")
    page.click("input[name=_preview]")
    expect(page.locator("#bulk-count")).to_contain_text("1 route will change")
    page.click("input[name=_apply]")
    expect(page.locator(".messagelist")).to_contain_text("Changed 1 route of 1.")
    assert list(DialPrefix.objects.filter(is_active=False).values_list("prefix", flat=True)) == [
        "44000"
    ]


def test_an_outsider_bulk_edit_counts_and_changes_only_their_own_rows(page: Page, tenants):
    log_in(page, "globex-operator")
    page.goto("/admin/routing/dialprefix/bulk-edit/?q=UK")
    page.select_option("#id_is_active", "no")
    page.click("input[name=_preview]")
    expect(page.locator("#bulk-count")).to_contain_text("1 route will change")
    expect(page.locator("#bulk-count")).to_contain_text("of 1 selected")
    assert_none_of(page, A_SECRETS)
    expect(page.locator("#id_trunk option", has_text="nw-")).to_have_count(0)
    page.click("input[name=_apply]")
    expect(page.locator(".messagelist")).to_contain_text("Changed 1 route of 1.")
    assert DialPrefix.objects.filter(tenant__slug="acme", is_active=False).count() == 0
    assert Trunk.objects.filter(carrier__tenant__slug="acme").count() == 3
