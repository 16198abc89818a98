"""The live traffic page in a real browser: the charts draw under the CSP, the trunk table
shows health, the page refreshes itself."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from routing.models import TrunkHealth
from tests.browser.test_admin_journey import log_in
from tests.browser.test_csp import RECORD_VIOLATIONS
from tests.factories import make_bucket, make_operator, make_tenant, make_trunk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A canvas is drawn when some pixel is not transparent.
CANVASES_DRAWN = """
() => Array.from(document.querySelectorAll('#traffic-charts canvas')).map((canvas) => {
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) return true; }
  return false;
})
"""


def is_error(message) -> bool:
    """A console error, but the browser's own favicon request (the project has none)."""
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


def minutes_ago(n: int) -> dt.datetime:
    return timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=n)


@pytest.fixture
def traffic():
    acme = make_tenant("acme", "192.0.2.0/24", name="Acme Telecom")
    globex = make_tenant("globex", "198.51.100.0/24", name="Globex")
    paris = make_trunk(acme, "acme-paris", carrier="Northwind")
    lyon = make_trunk(acme, "acme-lyon", carrier="Northwind")
    berlin = make_trunk(acme, "acme-berlin", carrier="Contoso")
    secret = make_trunk(globex, "globex-secret", carrier="Globex Carrier")
    for n in (*range(0, 60), *range(75, 170, 2)):  # a quiet quarter of an hour: a gap
        make_bucket(
            acme, paris, minutes_ago(n), codes={200: 4 + n % 5, 486: 1, 503: n % 3},
            durations=(45.0 + n, 90.0), pdd={1000: 3, 2000: 1},
        )  # fmt: skip
        if n % 2:
            make_bucket(acme, lyon, minutes_ago(n), codes={503: 2, 200: 1}, prefix="44")
    make_bucket(acme, berlin, minutes_ago(20), codes={404: 3}, prefix="49")
    make_bucket(globex, secret, minutes_ago(5), codes={200: 9})
    TrunkHealth.objects.create(
        trunk=lyon,
        state="unhealthy",
        since=minutes_ago(10),
        until=timezone.now() + dt.timedelta(minutes=5),
        reason="ASR 33% under 40% over 30 attempts",
    )
    TrunkHealth.objects.create(
        trunk=berlin, state="unhealthy", since=minutes_ago(30), until=minutes_ago(25)
    )
    make_operator("acme-operator", acme)
    return acme


def test_an_operator_watches_live_traffic(page: Page, traffic, artifacts):
    violations: list[str] = []
    errors: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", lambda m: errors.append(f"{m.text} {m.location}") if is_error(m) else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    log_in(page, "acme-operator")

    page.get_by_role("link", name="Live traffic").click()
    page.wait_for_load_state("networkidle")

    expect(page.locator("body")).to_have_attribute("data-traffic-charts", "drawn")
    assert page.locator("#traffic-charts canvas").count() == 3
    assert page.evaluate(CANVASES_DRAWN) == [True, True, True]
    health = {
        page.locator(f"tr[data-trunk='{name}'] .tr-health").inner_text()
        for name in ("acme-paris", "acme-lyon", "acme-berlin")
    }
    assert health == {"healthy", "unhealthy", "half-open"}
    expect(page.locator("tr[data-trunk='acme-lyon']")).to_contain_text("ASR 33% under 40%")
    expect(page.locator("#traffic-prefixes tbody tr")).to_have_count(3)
    assert page.locator(".tr-spark polyline").count() == 3
    assert "globex" not in page.content().lower()
    page.screenshot(path=str(artifacts / "traffic.png"), full_page=True)

    # The refresh swaps the live part in and redraws, without a reload.
    before = int(page.locator("#traffic-attempts").inner_text())
    make_bucket(traffic, None, minutes_ago(0), codes={200: 1000})
    assert page.evaluate("window.opsTraffic.refresh()") is True
    expect(page.locator("body")).to_have_attribute("data-traffic-refreshed", "1")
    expect(page.locator("#traffic-attempts")).to_have_text(str(before + 1000))
    assert page.evaluate(CANVASES_DRAWN) == [True, True, True]

    page.get_by_role("link", name="24 h").click()
    page.wait_for_load_state("networkidle")
    expect(page.locator("body")).to_have_attribute("data-traffic-charts", "drawn")

    violations.extend(page.evaluate("window.__cspViolations"))
    assert not violations, violations
    assert not errors, errors
