"""The ``browser`` fixture: a fresh headless Chromium per test, screenshotted if it fails."""

from __future__ import annotations

import pytest

from tests.support.browser import Browser
from tests.support.hub_process import HubProcess


@pytest.fixture
def browser(tmp_path_factory):
    """Headless Chromium with a throw-away profile; always quit afterwards."""
    chromium = Browser()
    chromium.artifacts = tmp_path_factory.mktemp("browser")
    try:
        yield chromium
    finally:
        chromium.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test using browsers fails, save each one's page as <fixture>-failure.png/.html,
    and add the tail of the hub's log."""
    report = yield
    if report.when != "call" or not report.failed:
        return report
    funcargs = getattr(item, "funcargs", {})
    browsers = {name: value for name, value in funcargs.items() if isinstance(value, Browser)}
    for name, chromium in browsers.items():
        saved = chromium.screenshot(chromium.artifacts / f"{name}-failure.png")
        report.sections.append((name, chromium.describe(saved)))
    hubs = [value for value in funcargs.values() if isinstance(value, HubProcess)]
    if browsers and hubs:
        try:
            tail = "\n".join(hubs[0].log_text().splitlines()[-60:])
        except OSError as error:
            tail = f"(no hub log: {error})"
        report.sections.append(("hub log (last 60 lines)", tail))
    return report
