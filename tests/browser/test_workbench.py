"""The operator's workbench in a real browser: the number box, the prefix list found by
number and read at a glance at 1280 px, the superusers' overview.

Acme's operator works; Globex's operator (the outsider, with a UK route of its own)
must see nothing of Acme's at any step, and Acme's nothing of Globex's.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from routing.models import DialPrefix, RouteTarget, Trunk, TrunkHealth
from tests.browser.test_admin_journey import log_in
from tests.browser.test_csp import RECORD_VIOLATIONS
from tests.factories import (
    default_plan,
    make_bucket,
    make_operator,
    make_route,
    make_tenant,
    make_trunk,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ACME_SECRETS = ("Northwind", "nw-london", "nw-backup", "London via Northwind", "Acme Telecom")
GLOBEX_SECRETS = ("Globex Carrier", "gx-uk", "UK via Globex", "Globex Ltd")
LIST_ROWS = 100


@pytest.fixture
def workbench():
    acme = make_tenant("acme", "192.0.2.0/24", name="Acme Telecom")
    globex = make_tenant("globex", "198.51.100.0/24", name="Globex Ltd")
    london = make_trunk(acme, "nw-london", carrier="Northwind", host="sip.london.example")
    backup = make_trunk(acme, "nw-backup", carrier="Northwind", host="sip.backup.example")
    paris = make_trunk(acme, "cs-paris", carrier="Contoso", host="sip.paris.example")
    TrunkHealth.objects.create(trunk=paris, state="unhealthy", since="2026-01-01T00:00Z")
    make_route(acme, "44", backup, description="UK")
    make_route(
        acme,
        "4420",
        (london, 1, 70),
        (backup, 1, 30),
        (paris, 2, 100),
        description="London via Northwind",
    )
    make_route(acme, "33", london, backup, routing_mode="parallel", description="France")
    # A page of long, realistic rows: three lanes each, descriptions, caller rules.
    plan = default_plan(acme)
    rows = DialPrefix.objects.bulk_create(
        DialPrefix(
            tenant=acme,
            plan=plan,
            prefix=f"49{n:04d}",
            caller_prefix="4930" if n % 7 == 0 else "",
            description=f"Germany range {n} (mobile, premium carriers)",
        )
        for n in range(LIST_ROWS)
    )
    RouteTarget.objects.bulk_create(
        RouteTarget(prefix=row, trunk=trunk, priority=p, weight=w)
        for row in rows
        for trunk, p, w in ((london, 1, 70), (backup, 1, 30), (paris, 2, 100))
    )
    make_route(
        globex,
        "44",
        make_trunk(globex, "gx-uk", carrier="Globex Carrier"),
        description="UK via Globex",
    )
    make_operator("acme-operator", acme)
    make_operator("globex-operator", globex)
    make_operator("root", None, is_superuser=True)
    return acme, globex


def assert_none_of(page: Page, secrets: tuple[str, ...]) -> None:
    text = page.content()
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into {page.url}"


def find_number(page: Page, number: str) -> None:
    """Type into the header's number box, as from any page."""
    page.fill("#number-box-input", number)
    page.press("#number-box-input", "Enter")
    page.wait_for_load_state("load")


def test_the_number_box_answers_from_any_page(page: Page, workbench, artifacts):
    violations: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, "acme-operator")
    page.goto("/admin/routing/carrier/")
    expect(page.locator("#number-box-input")).to_be_visible()

    find_number(page, "+44 (0)20-7123.4567".replace("(0)", ""))
    expect(page.locator("#nb-chain")).to_contain_text(re.compile(r"44\s*→\s*4420"))
    chosen = page.locator("#nb-routes tr.nb-chosen")
    expect(chosen).to_contain_text("4420")
    expect(chosen).to_contain_text("Northwind/nw-london")
    expect(chosen).to_contain_text("70%")
    expect(chosen).to_contain_text("30%")
    expect(chosen.locator("s.ro-off")).to_have_text("Contoso/cs-paris")
    expect(page.locator("#nb-outcome")).to_contain_text("routed")
    assert_none_of(page, GLOBEX_SECRETS)
    page.screenshot(path=str(artifacts / "number-box.png"), full_page=True)
    violations += page.evaluate("window.__cspViolations")

    # Another format, from the result page's own box; then the full simulation.
    find_number(page, "0044 20 7123 4567")
    expect(page.locator("#nb-digits")).to_have_text("442071234567")
    page.locator("#nb-simulate").click()
    expect(page.locator("#sim-outcome")).to_contain_text("routed")
    expect(page.locator("#sim-routes tbody tr").first).to_contain_text("nw-")
    assert violations == []


def test_the_outsider_finds_only_its_own(page: Page, workbench):
    log_in(page, "globex-operator")
    find_number(page, "+44 20 7123 4567")
    expect(page.locator("#nb-chain")).to_contain_text("44")
    expect(page.locator("#nb-routes")).to_contain_text("gx-uk")
    assert_none_of(page, ACME_SECRETS)

    page.goto("/admin/number/?n=33123456789")
    expect(page.locator("#nb-chain")).to_contain_text("no prefix of this number has a route")
    page.goto("/admin/number/?n=442071234567&tenant=acme")
    expect(page.locator(".errorlist")).to_contain_text("Select a valid choice")
    assert_none_of(page, ACME_SECRETS)

    page.goto("/admin/routing/dialprefix/")
    page.fill("#searchbar", "442071234567")
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert_none_of(page, ACME_SECRETS)
    assert page.request.get("/admin/overview/").status == 403


def test_the_prefix_list_fits_1280_and_finds_by_number(page: Page, workbench, artifacts):
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, "acme-operator")
    page.goto(f"/admin/routing/dialprefix/?per_page={LIST_ROWS}")

    # The search box has the keyboard; the list does not scroll sideways.
    assert page.evaluate("document.activeElement && document.activeElement.id") == "searchbar"
    expect(page.locator("#result_list tbody tr")).to_have_count(LIST_ROWS)
    for box in ("document.documentElement", "document.querySelector('#changelist-form .results')"):
        wide, room = page.evaluate(f"[{box}.scrollWidth, {box}.clientWidth]")
        assert wide <= room, f"{box} scrolls sideways: {wide} px of content in {room} px"
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('#result_list tbody tr'))"
        ".map((row) => row.getBoundingClientRect().height)"
    )
    assert max(heights) < 40, f"a row is {max(heights)} px tall: the targets column wraps"
    germany = page.locator("#result_list tbody tr", has_text="490001")
    expect(germany.locator(".ro-share").first).to_have_text("70%")
    expect(germany.locator("s.ro-off")).to_have_text("cs-paris")
    expect(page.locator("#result_list tbody tr", has_text="France")).to_contain_text("parallel")
    assert_none_of(page, GLOBEX_SECRETS)
    page.screenshot(path=str(artifacts / "prefix-list.png"))

    page.keyboard.type("+44 20 7123 4567")  # straight into the focused search box
    page.keyboard.press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator("th.field-prefix_display")).to_have_text(["44", "4420"])

    # Filter by trunk, from the scoped choices of the filter sidebar.
    page.goto("/admin/routing/dialprefix/")
    page.locator("#changelist-filter").get_by_role("link", name="Contoso / cs-paris").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(min(LIST_ROWS + 1, 100))
    assert_none_of(page, GLOBEX_SECRETS)


def test_the_overview_is_for_superusers(page: Page, workbench, artifacts):
    acme, _ = workbench
    london = Trunk.objects.get(name="nw-london")
    for minutes in range(1, 30):
        make_bucket(
            acme, london, timezone.now() - dt.timedelta(minutes=minutes), codes={200: 8, 503: 2}
        )
    log_in(page, "root")
    page.goto("/admin/routing/carrier/")
    page.locator("#nav-sidebar").get_by_role("link", name="Overview").click()
    acme = page.locator("#overview-acme")
    expect(acme).to_contain_text("Acme Telecom")
    expect(acme).to_contain_text("Contoso / cs-paris (unhealthy)")
    expect(acme.locator("td.num").nth(4)).to_have_text("290")  # 29 minutes of 10 calls
    expect(acme.locator("td.num").nth(5)).to_have_text("80.0%")
    expect(page.locator("#overview-globex")).to_contain_text("Globex Ltd")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    page.context.clear_cookies()
    log_in(page, "acme-operator")
    expect(page.locator("#nav-sidebar, #content-main").first).not_to_contain_text("Overview")
    assert page.request.get("/admin/overview/").status == 403
