"""The Environments page shows what users wrote as text: no tag a user supplied is rendered.

Attack: register an environment whose display name and description carry markup (through
the API, as a script would), then open the page. The table and the build section must show
the strings literally and create no element from them; other viewers get the same rendering.
"""

from __future__ import annotations

import pytest

from tests.browser.test_environments_page import builder_site, session_of  # noqa: F401
from tests.browser.test_lab_in_browser import sign_in
from tests.conftest import SHARED_PASSWORD
from tests.integration.test_builder_environments import SERVICE

pytestmark = pytest.mark.browser

USERNAME = "chromium-eve"
HOSTILE = '<img src=x id=pwned onerror="document.title=1">'

FIND_INJECTED = """
return {
  injected: document.querySelectorAll("#pwned, #environments img").length,
  table: document.querySelector("#environments tbody").textContent,
  title: document.title,
};
"""


@pytest.fixture
def running_hub(builder_site):  # noqa: F811
    return builder_site["hub"]


def test_hostile_names_appear_as_text_on_the_page(builder_site, running_hub, browser):  # noqa: F811
    hub_url = running_hub.url
    sign_in(browser, hub_url, USERNAME, SHARED_PASSWORD)
    browser.wait_for_url(lambda url: "/hub/login" not in url, 60, "past the login page")
    user = session_of(browser, hub_url)
    headers = {"Authorization": f"token {user.token}"}
    registered = user.http.post(
        f"{hub_url}{SERVICE}/api/environments",
        headers=headers,
        json={
            "name": "hostile",
            "repository": str(builder_site["repo"]),
            "display_name": HOSTILE,
            "description": HOSTILE,
        },
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    environment = registered.json()
    user.http.post(
        f"{hub_url}{SERVICE}/api/environments/{environment['id']}/cancel",
        headers=headers,
        timeout=30,
    )

    browser.get(f"{hub_url}{SERVICE}/")
    row = browser.wait_for(f"#env-{environment['id']}", 60)
    row.find_element("css selector", "button").click()  # "Log": the build section
    browser.wait_for_text("#build-name", HOSTILE, 30)
    seen = browser.driver.execute_script(FIND_INJECTED)

    assert seen["injected"] == 0, seen
    assert HOSTILE in seen["table"]
    assert seen["title"] != "1"
