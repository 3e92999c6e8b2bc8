"""The ``browser`` fixture: a fresh headless Chromium per test, screenshotted if it fails."""

from __future__ import annotations

import pytest

from tests.support.browser import Browser


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
    """When a test using ``browser`` fails, save its page as failure.png/.html."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    chromium = funcargs.get("browser")
    if report.when == "call" and report.failed and isinstance(chromium, Browser):
        saved = chromium.screenshot(chromium.artifacts / "failure.png")
        report.sections.append(("browser", chromium.describe(saved)))
        hub = funcargs.get("running_hub")
        if hub is not None:
            try:
                tail = "\n".join(hub.log_text().splitlines()[-60:])
            except OSError as error:
                tail = f"(no hub log: {error})"
            report.sections.append(("hub log (last 60 lines)", tail))
    return report
