"""The browser suite: Debian's chromium driven by Playwright against a live server.

Nothing is downloaded: Playwright launches the system chromium. Without it (or
when it cannot start) every test here is skipped with the reason.

Screenshots go to BROWSER_ARTIFACTS_DIR (default: a pytest temporary directory);
`make screenshots`-style refresh of the pictures in docs/:
    BROWSER_ARTIFACTS_DIR=docs python -m pytest tests/browser
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

# The live server binds the loopback address, not whatever "localhost" resolves to.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed")
    # Django keeps connections per thread *and* per context (asgiref.local), and
    # Playwright's sync API runs this thread inside its own event-loop context: a
    # connection opened before would be unreachable from here on, and left open when
    # the test database is dropped. Close it now; the browser tests open their own.
    connections.close_all()
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests
    # make between browser steps are ordinary synchronous code. Only while it runs:
    # elsewhere Django's guard against ORM calls from async code stays on.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
            )
        except Error as exc:
            pytest.skip(f"Playwright cannot launch {CHROMIUM}: {exc}")
        try:
            yield browser
        finally:
            browser.close()
    finally:
        connections.close_all()  # the ones opened in Playwright's context, same reason
        playwright.stop()
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def artifacts(tmp_path_factory) -> Path:
    configured = os.environ.get("BROWSER_ARTIFACTS_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(chromium, live_server, settings, artifacts, request):
    """A fresh browser tab on the live server; a screenshot is kept if the test fails."""
    # The live server speaks plain HTTP: cookies marked Secure would not come back.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 860}, locale="en-US"
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            tab.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
