"""Journey J1 with the lab's identity: Chromium signs in through a real OpenID Connect
provider's own pages (PKCE), sees the profiles its groups allow, and lands in JupyterLab;
the hub refreshes the expired access token with the refresh token before the server starts.
"""

from __future__ import annotations

import shutil
import time

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.browser.test_lab_in_browser import reach_lab
from tests.conftest import open_folder
from tests.support.browser import Browser
from tests.support.oidc_provider import (
    ACCESS_TOKEN_TTL,
    admin_token_by_password,
    hub_with_client_secret,
    oidc_site_config,
)

pytestmark = pytest.mark.browser

PROFILES = [
    {"name": "small", "display_name": "Small", "cpu": 1, "memory": "1Gi", "default": True},
    {"name": "beamline", "display_name": "Beamline", "memory": "1Gi", "groups": ["physics"]},
]


@pytest.fixture(scope="module")
def oidc_hub(oidc_provider_factory):
    folder = open_folder("oidc-browser")
    write_sample_data(folder / "data")
    config = oidc_site_config(
        folder, oidc_provider_factory, ("physics", "chemistry"), profiles=PROFILES
    )
    with hub_with_client_secret(config, folder / "hub.log") as started:
        yield started
    shutil.rmtree(folder, ignore_errors=True)


def sign_in_at_the_provider(browser, hub_url: str, login: str) -> None:
    """The hub's login page → the provider's button → the provider's own login form."""
    browser.get(hub_url)
    browser.wait_for_url(lambda url: "/hub/login" in url, 60, "the hub's login page")
    browser.click_text("a.btn", "Sign in with your lab account", 60)
    browser.wait_for("input[name=login]", 60).send_keys(login)
    browser.wait_for("input[name=password]").send_keys("any password")
    browser.wait_for("button.login-submit").click()
    browser.wait_for_url(lambda url: url.startswith(hub_url + "/hub/spawn"), 60, "the spawn form")


def offered_profiles(browser) -> set[str]:
    form = browser.wait_for("form#spawn_form")
    return {
        radio.get_attribute("value")
        for radio in form.find_elements("css selector", "input[name=profile]")
    }


def test_members_sign_in_through_the_provider_and_tokens_are_refreshed(oidc_hub, browser):
    token = admin_token_by_password(oidc_hub)
    sign_in_at_the_provider(browser, oidc_hub.url, "ada-oidc")

    assert offered_profiles(browser) == {"small", "beamline"}
    first = oidc_hub.api("/users/ada-oidc", token).json()
    assert first["groups"] == ["physics"]
    assert first["auth_state"]["oauth_user"]["uidNumber"] == 51001

    time.sleep(ACCESS_TOKEN_TTL + 2)  # the access token has expired at the provider
    form = browser.wait_for("form#spawn_form")
    form.find_element("css selector", "input[value=beamline]").click()
    form.find_element("css selector", "button[type=submit]").click()
    reach_lab(browser, f"{oidc_hub.url}/user/ada-oidc/lab")
    browser.wait_for("#jp-main-dock-panel", 120)

    refreshed = oidc_hub.api("/users/ada-oidc", token).json()["auth_state"]
    assert refreshed["access_token"] != first["auth_state"]["access_token"]
    assert refreshed["sign_in_method"] == "oidc"
    assert "Refreshing oauth access token for ada-oidc" in oidc_hub.log_text()
    oidc_hub.api("/users/ada-oidc/server", token, method="DELETE")


def test_a_non_member_is_not_offered_the_group_profile(oidc_hub):
    other = Browser()
    try:
        sign_in_at_the_provider(other, oidc_hub.url, "grace-oidc")
        assert offered_profiles(other) == {"small"}
    finally:
        other.quit()
