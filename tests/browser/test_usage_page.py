"""An admin opens the usage report in Chromium: the charts draw, the tables fill, and a
group and profile named with a script tag show as text, never as an element."""

from __future__ import annotations

import pytest

from tests.browser.test_lab_in_browser import sign_in
from tests.integration.test_usage_report import ADMIN_PASSWORD, HOSTILE, PERIOD, report_hub  # noqa: F401

pytestmark = pytest.mark.browser

SEEN = """
const page = document.querySelector("#kh-usage");
return {
  scripts: page.querySelectorAll("script").length,
  charts: page.querySelectorAll("svg.kh-usage-chart").length,
  bars: [...document.querySelectorAll("#kh-chart-gpu-hours-by-group g.kh-bar")]
    .map((bar) => [bar.dataset.label, bar.querySelector("rect").getBBox().width]),
  groups: [...document.querySelectorAll("#kh-usage-table-group td:first-child")]
    .map((cell) => cell.textContent),
};
"""


def test_an_admin_sees_the_charts_and_tables_with_hostile_names_as_text(report_hub, browser):  # noqa: F811
    sign_in(browser, report_hub.url, "admin", ADMIN_PASSWORD)
    browser.wait_for_url(lambda url: "/hub/login" not in url, 60, "past the login page")
    browser.get(f"{report_hub.url}/hub/usage?{PERIOD}")
    browser.wait_for("#kh-chart-gpu-hours-by-group", 30)
    seen = browser.driver.execute_script(SEEN)

    assert seen["scripts"] == 0, seen
    assert seen["charts"] == 4
    assert seen["groups"] == [HOSTILE, "physics"]
    assert [label for label, _ in seen["bars"]] == [HOSTILE, "physics"]
    assert all(width > 100 for _, width in seen["bars"]), seen["bars"]  # 4 GPU-hours each
