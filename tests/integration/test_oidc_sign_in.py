"""OIDC sign-in against a real provider (npm oidc-provider), and every bad input it can send.

Each refused sign-in shows the reason on a page (no traceback in the hub's log) and leaves
no hub user behind: the checks run before JupyterHub makes the user.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import open_folder
from tests.support.hub_process import VENV_BIN, kioskhub_env, write_site_config
from tests.support.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    SECRET_ENV,
    admin_token_by_password,
    hub_with_client_secret,
    oidc_site_config,
)

pytestmark = pytest.mark.integration


def provider_sign_in(
    hub_url: str, login: str, browser: requests.Session | None = None
) -> requests.Response:
    """Follow the hub's button to the provider's own login page, sign in as ``login``,
    and return the hub's answer after the callback (``browser`` keeps the cookies)."""
    browser = browser or requests.Session()
    page = browser.get(f"{hub_url}/hub/oidc/oauth_login", timeout=30)
    form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert form, f"no login form at the provider:\n{page.text[:500]}"
    action = requests.compat.urljoin(page.url, form.group(1))
    return browser.post(
        action, data={"prompt": "login", "login": login, "password": "any"}, timeout=30
    )


@pytest.fixture(scope="module")
def hub(oidc_provider_factory):
    folder = open_folder("oidc")
    write_sample_data(folder / "data")
    config = oidc_site_config(folder, oidc_provider_factory)
    with hub_with_client_secret(config, folder / "hub.log") as started:
        yield started
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def admin_token(hub):
    return admin_token_by_password(hub)


def users_in_database(folder) -> set[str]:
    with sqlite3.connect(folder / "state" / "jupyterhub.sqlite") as db:
        return {name for (name,) in db.execute("select name from users")}


def hub_users(hub, admin_token) -> set[str]:
    return {user["name"] for user in hub.api("/users", admin_token).json()}


def test_the_login_page_offers_the_provider_and_the_password(hub):
    page = requests.get(f"{hub.url}/hub/login", timeout=30).text
    assert 'href="/hub/oidc/oauth_login"' in page
    assert "Sign in with your lab account" in page
    assert 'action="/hub/shared-password/login"' in page


def test_a_member_signs_in_with_groups_and_claims_kept(hub, admin_token):
    reply = provider_sign_in(hub.url, "ada-oidc")

    assert reply.status_code == 200, reply.text[:1000]
    assert "/hub/" in reply.url and "oauth_callback" not in reply.url
    user = hub.api("/users/ada-oidc", admin_token).json()
    assert user["groups"] == ["physics"]
    state = user["auth_state"]
    assert state["sign_in_method"] == "oidc"
    assert state["oauth_user"]["uidNumber"] == 51001
    assert state["oauth_user"]["gidNumber"] == 51000
    assert state["refresh_token"]


@pytest.mark.parametrize(
    ("login", "status", "message", "name"),
    [
        ("grace-oidc", 403, "not in a group that may use this site", "grace-oidc"),
        ("rooty", 403, "&#39;root&#39; is reserved for KioskHub or the system", "root"),
        ("nameless", 403, "did not send the claim &#39;preferred_username&#39;", "nameless"),
        ("listy", 403, "as a list, not text", "listy"),
    ],
    ids=["outside the allowed groups", "reserved username", "claim missing", "claim a list"],
)
def test_refused_sign_ins_say_why_and_create_nothing(
    hub, admin_token, login, status, message, name
):
    reply = provider_sign_in(hub.url, login)

    assert reply.status_code == status, reply.text[:1000]
    assert "You could not be signed in" in reply.text
    assert message in reply.text
    assert name not in hub_users(hub, admin_token)
    assert "Traceback" not in hub.log_text()


def test_a_wrong_client_secret_is_told_and_creates_no_user(oidc_provider_factory):
    folder = open_folder("oidc-secret")
    write_sample_data(folder / "data")
    config = oidc_site_config(folder, oidc_provider_factory)
    try:
        with hub_with_client_secret(config, folder / "hub.log", "not-the-secret") as hub:
            reply = provider_sign_in(hub.url, "ada-oidc")

            assert reply.status_code == 502, reply.text[:1000]
            assert "refused this site&#39;s client credentials" in reply.text
            assert "The site&#39;s client id or secret is wrong" in reply.text
            assert "Traceback" not in hub.log_text()
            assert users_in_database(folder) == {"admin"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_unreachable_issuer_stops_check_config_and_the_hub():
    folder = open_folder("oidc-unreachable")
    write_sample_data(folder / "data")
    issuer = "http://127.0.0.1:9/realms/lab"
    auth = {"type": "oidc", "oidc": {"issuer": issuer, "client_id": CLIENT_ID}}
    config = write_site_config(folder, auth=auth)
    env = {**kioskhub_env(), SECRET_ENV: CLIENT_SECRET}
    try:
        for command in ("check-config", "up"):
            done = subprocess.run(
                [str(VENV_BIN / "kioskhub"), command, "--config", str(config)],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert f"cannot reach the OIDC provider at {issuer}" in done.stderr
            assert "Traceback" not in done.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)
