"""The ``browser`` fixture: a fresh headless Chromium per test, screenshotted if it fails."""

from __future__ import annotations

import pytest

from tests.support.browser import Browser
from tests.support.hub_process import HubProcess


def chromium(tmp_path_factory, name: str):
    """Headless Chromium with a throw-away profile; always quit afterwards."""
    browser = Browser()
    browser.artifacts = tmp_path_factory.mktemp(name)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def browser(tmp_path_factory):
    """A person's browser."""
    yield from chromium(tmp_path_factory, "browser")


@pytest.fixture
def author_browser(tmp_path_factory):
    """A second person's browser, beside ``browser`` (e.g. an author beside a reviewer)."""
    yield from chromium(tmp_path_factory, "author-browser")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test using browsers fails, save each one's page as <fixture>-failure.png/.html,
    and add the tail of the hub's log."""
    report = yield
    if report.when != "call" or not report.failed:
        return report
    funcargs = getattr(item, "funcargs", {})
    browsers = {name: value for name, value in funcargs.items() if isinstance(value, Browser)}
    for name, opened in browsers.items():
        saved = opened.screenshot(opened.artifacts / f"{name}-failure.png")
        report.sections.append((name, opened.describe(saved)))
    hubs = [value for value in funcargs.values() if isinstance(value, HubProcess)]
    if browsers and hubs:
        try:
            tail = "\n".join(hubs[0].log_text().splitlines()[-60:])
        except OSError as error:
            tail = f"(no hub log: {error})"
        report.sections.append(("hub log (last 60 lines)", tail))
    return report
