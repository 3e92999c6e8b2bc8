"""Journey J2 in a real browser: register a repository on the Environments page, watch its
build live, launch it, and land in JupyterLab on the environment that was built.

One hub with the builder service (local paths allowed) and a real git repository (a
``requirements.txt`` with tomli-w and a ``postBuild``), made as the integration test of the
builder makes them. The browser signs in on the hub's login form, fills the page's register
form, follows the log and progress bar until "Ready", clicks the environment's launch link,
and reaches Lab; then the hub's REST API, with a token made from the browser's own session
cookies, runs ``import tomli_w`` in a kernel of that server.
"""

from __future__ import annotations

import shutil

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.browser.test_lab_in_browser import (
    fail_on_spawn_error,
    lab_or_spawn_form,
    reach_lab,
    sign_in,
)
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_builder_environments import (
    SERVICE,
    git,
    make_repository,
    start_builder_hub,
)
from tests.support.hub_process import free_port, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.browser

USERNAME = "chromium-eve"
"""A name of its own: servers' cgroups are named after their user, on the whole machine."""
NAME = "tomli"
SPAWN_NAME = f"{USERNAME}.{NAME}"
BUILD_TIMEOUT = 400
"""A real build takes 25-85 s on two cores; a cold uv cache can take much longer."""

SNAPSHOT = """
const text = (id) => document.getElementById(id).textContent;
return {
  shown: !document.getElementById("build").hidden,
  name: text("build-name"),
  log: text("log"),
  percent: text("percent"),
  width: document.getElementById("progress").style.width,
  phase: text("phase"),
  message: text("message"),
};
"""


@pytest.fixture(scope="module")
def builder_site():
    """A hub with the builder service, and a committed repository on this machine."""
    folder = open_folder("builder-page")
    write_sample_data(folder / "data")
    repo = make_repository(folder, folder / "state" / "secrets.json")
    config = write_site_config(
        folder,
        builder={
            "enabled": True,
            "port": free_port(),
            "allow_local_paths": True,
            "build_timeout": 600,
        },
    )
    hub = start_builder_hub(config, folder / "hub.log")
    try:
        yield {"hub": hub, "repo": repo, "folder": folder}
    finally:
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def running_hub(builder_site):
    """The builder hub, under the name the browser conftest looks for to attach its log."""
    return builder_site["hub"]


def session_of(browser, hub_url: str) -> UserSession:
    """A UserSession that holds the browser's own cookies, and an API token made with them."""
    user = UserSession(hub_url, USERNAME)
    # get_cookies() only returns those the current page (in Lab: /user/...) may see; the
    # hub's session cookies have the path /hub/, so ask Chromium for all of them, and keep
    # the hub's own (the service and the server each have an _xsrf cookie of their own).
    for cookie in browser.driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]:
        if cookie["path"] not in ("/", "/hub/"):
            continue
        user.http.cookies.set(
            cookie["name"], cookie["value"], domain=cookie["domain"], path=cookie["path"]
        )
    user.request_token()
    return user


def follow_the_build(browser) -> list[dict]:
    """Watch the build section until it says Ready (or Failed); return what it showed."""
    snapshots: list[dict] = []

    def finished(driver):
        snapshot = driver.execute_script(SNAPSHOT)
        if not snapshots or snapshot != snapshots[-1]:
            snapshots.append(snapshot)
        if snapshot["phase"].startswith("Failed"):
            raise AssertionError(f"the build failed:\n{snapshot['phase']}\n{snapshot['log']}")
        return snapshot["phase"] == "Ready"

    browser.wait_until(finished, BUILD_TIMEOUT, "the build never said Ready on the page")
    return snapshots


def percent_of(snapshot: dict) -> int | None:
    text = snapshot["percent"].strip()
    return int(text.rstrip("%")) if text.endswith("%") else None


def test_register_watch_the_build_and_launch_it_from_the_page(builder_site, running_hub, browser):
    hub_url = running_hub.url
    repo = builder_site["repo"]
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")

    sign_in(browser, hub_url, USERNAME, SHARED_PASSWORD)
    browser.wait_for_url(lambda url: "/hub/login" not in url, 60, "past the login page")
    browser.get(f"{hub_url}{SERVICE}/")
    browser.wait_for_text("h1", "Environments from your repositories", 60)
    assert USERNAME in browser.wait_for("header .who").text

    form = browser.wait_for("form#register")
    form.find_element("css selector", "input[name=name]").send_keys(NAME)
    form.find_element("css selector", "input[name=repository]").send_keys(str(repo))
    form.find_element("css selector", "input[name=ref]").send_keys(branch)
    form.find_element("css selector", "button[type=submit]").click()

    browser.wait_for_text("#message", f"Registered {NAME}; building.", 60)
    snapshots = follow_the_build(browser)

    final = snapshots[-1]
    assert final["shown"] and final["name"] == NAME
    assert (final["percent"], final["width"]) == ("100%", "100%")
    lines = final["log"].splitlines()
    assert any("Installing the server packages" in line for line in lines), lines
    assert any("kernel said 1+1 = 2" in line for line in lines), lines
    assert "no hub variables" in lines

    building = [s for s in snapshots if s["phase"] not in ("", "Ready")]
    assert building, f"the page never showed the build in progress: {snapshots}"
    live = [s for s in building if s["log"].strip() and (percent_of(s) or 0) < 100]
    assert live, f"no log lines with a progress under 100% while building: {building}"
    percents = [p for s in snapshots if (p := percent_of(s)) is not None]
    assert percents == sorted(percents), percents
    assert len(set(percents)) >= 2, percents
    assert any(len(s["log"].splitlines()) < len(lines) for s in building), (
        "the log never grew while the page watched"
    )

    # The table (refreshed when the build is done) says ready, pinned to the commit.
    commit = git(repo, "rev-parse", "HEAD")
    row = browser.wait_until(
        lambda driver: next(
            (
                r
                for r in browser.css("#environments tbody tr")
                if r.find_elements("css selector", "td.status-ready")
                and r.find_elements("css selector", "a.launch")
                and f"@ {branch} → {commit[:12]}" in r.text
            ),
            False,
        ),
        60,
        "no ready row, pinned to the commit, with a launch link",
    )
    link = row.find_element("css selector", "a.launch")
    assert link.get_attribute("href").endswith(f"/hub/spawn?environment={SPAWN_NAME}")
    link.click()

    lab_prefix = f"{hub_url}/user/{USERNAME}/lab"
    if lab_or_spawn_form(browser, lab_prefix) == "form":
        choice = browser.wait_for(f"form#spawn_form input[name=environment][value='{SPAWN_NAME}']")
        if not choice.is_selected():
            choice.click()
        assert choice.is_selected()
        browser.wait_for("form#spawn_form button[type=submit]").click()
    reach_lab(browser, lab_prefix)
    fail_on_spawn_error(browser)
    browser.wait_for("#jp-main-dock-panel", 120)

    user = session_of(browser, hub_url)
    try:
        server = user.api(f"/users/{USERNAME}").json()["servers"][""]
        assert server["ready"], server
        assert server["user_options"]["environment"] == SPAWN_NAME, server
        result = user.execute(
            "import sys, tomli_w\nprint(tomli_w.dumps({'beam': 1}).strip())\nprint(sys.prefix)",
            timeout=120,
        )
    finally:
        user.stop_server()
    assert result["error"] is None, result

    environments = requests.get(
        f"{hub_url}{SERVICE}/api/environments",
        headers={"Authorization": f"token {user.token}"},
        timeout=60,
    ).json()["environments"]
    built = next(e for e in environments if e["spawn_name"] == SPAWN_NAME)
    assert built["source"]["commit_sha"] == commit
    assert result["stdout"].split() == ["beam", "=", "1", built["artifact"]["venv_path"]]
