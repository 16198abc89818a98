"""The Content-Security-Policy lets every page work: no violation in a real browser.

Each page is opened as an operator or a superuser; any `securitypolicyviolation`
event or CSP console error fails the test, naming the page and what was blocked.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_admin_journey import log_in
from tests.factories import make_operator, make_route, make_tenant, make_trunk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


@pytest.fixture
def data():
    acme = make_tenant("acme", "192.0.2.0/24", name="Acme Telecom")
    make_route(acme, "33", make_trunk(acme, "acme-paris"), description="France")
    make_operator("acme-operator", acme)
    make_operator("root", None, is_superuser=True)
    return acme


@pytest.fixture
def watched(page: Page):
    """The page, and the CSP violations seen on it (events and console errors)."""
    seen: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            seen.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return page, seen


def visit(page: Page, seen: list[str], url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    seen.extend(page.evaluate("window.__cspViolations"))
    assert not seen, f"CSP violations on {url}: {seen}"


@pytest.mark.parametrize("username", ["acme-operator", "root"])
def test_admin_and_ops_pages_run_without_violations(watched, data, username):
    page, seen = watched
    log_in(page, username)
    for url in [
        "/admin/",
        "/admin/routing/carrier/",
        "/admin/routing/carrier/add/",
        "/admin/routing/trunk/",
        "/admin/routing/dialprefix/",
        f"/admin/routing/dialprefix/{data.prefixes.get().pk}/change/",
        "/admin/routing/dialprefix/add/",
        "/admin/simulator/",
        "/admin/simulator/?tenant=acme&callee=33612345678",
        "/admin/recent-changes/",
    ]:
        visit(page, seen, url)

    # The autocomplete (select2, jQuery) works under the policy too.
    page.goto("/admin/routing/dialprefix/add/")
    page.get_by_text("Add another Route target").click()
    page.locator("#targets-0 .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill("paris")
    expect(page.locator(".select2-results__option", has_text="acme-paris")).to_be_visible()
    seen.extend(page.evaluate("window.__cspViolations"))
    assert not seen, seen


def test_the_swagger_docs_render_without_violations(watched, data):
    page, seen = watched
    log_in(page, "root")

    visit(page, seen, "/api/v1/docs")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Kamailio routing engine API")
    expect(page.locator(".opblock").first).to_be_visible()
    seen.extend(page.evaluate("window.__cspViolations"))
    assert not seen, seen
