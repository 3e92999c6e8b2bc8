"""Sign-in with GitLab against a real hub and the GitLab simulation's OAuth endpoints.

A user follows the hub's login to GitLab's authorize page, signs in there and comes back
with a code; the hub exchanges it (with the application's id and secret), reads the user and
their groups with the token, and keeps the tokens in the encrypted auth state. GitLab groups
gate sign-in, admin rights and profiles; the spawn form lists the user's own GitLab images.
Attacks and failures: a user outside the allowed groups, a reserved GitLab username, a wrong
application secret, a missing secret at start-up, an expired token.
"""

from __future__ import annotations

import os
import shutil
from html import unescape
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import open_folder
from tests.gitlab_sim import GitLabSimulation
from tests.support.hub_process import free_port, start_hub, write_site_config

pytestmark = pytest.mark.integration

SECRET_ENV = "KIOSKHUB_TEST_GITLAB_SECRET"
ADA_SHA, BOB_SHA = "a" * 40, "b" * 40


@pytest.fixture(scope="module")
def gitlab():
    with GitLabSimulation() as simulation:
        model = simulation.model
        users = {
            name: model.add_user(name)[0]
            for name in ("ada", "carol", "dave", "root", "boss", "erin")
        }
        bob, _ = model.add_user("bob")
        model.add_group("lab/physics", {users["ada"]: "developer", users["root"]: "owner"})
        model.add_group(
            "lab/chemistry", {users["carol"]: "guest", users["erin"]: "guest", bob: "guest"}
        )
        model.add_group("lab/admins", {users["boss"]: "owner"})
        model.add_group("elsewhere", {users["dave"]: "owner"})
        simulation.ada_project = model.add_project(
            "lab/ada-env", members={users["ada"]: "developer"}
        )
        bob_project = model.add_project("lab/bob-secret", members={bob: "owner"})
        model.push_image(simulation.ada_project, ADA_SHA)
        model.push_image(bob_project, BOB_SHA)
        yield simulation


@pytest.fixture(scope="module")
def hub(gitlab):
    folder = open_folder("gitlab-sign-in")
    write_sample_data(folder / "data")
    hub_url = f"http://127.0.0.1:{free_port()}"
    application = gitlab.model.add_application("KioskHub", f"{hub_url}/hub/gitlab/oauth_callback")
    gitlab.application = application
    config = write_site_config(
        folder,
        hub={"url": hub_url},
        auth={
            "type": "gitlab",
            "gitlab": {
                "url": gitlab.url,
                "client_id": application.client_id,
                "client_secret_env": SECRET_ENV,
                "allowed_groups": ["lab/physics", "lab/chemistry"],
                "admin_groups": ["lab/admins"],
            },
        },
        spawner={"backend": "podman"},
        profiles=[
            {"name": "small", "display_name": "Small", "memory": "1Gi", "default": True},
            {
                "name": "physics-big",
                "display_name": "Physics big",
                "memory": "2Gi",
                "groups": ["lab/physics"],
            },
        ],
    )
    os.environ[SECRET_ENV] = application.secret
    try:
        started = start_hub(config, folder / "hub.log")
    finally:
        os.environ.pop(SECRET_ENV)
    yield started
    if started.process.poll() is None:
        started.stop()
    shutil.rmtree(folder, ignore_errors=True)


def sign_in(hub, gitlab, username: str) -> tuple[requests.Session, requests.Response]:
    """Follow the hub's login to GitLab's authorize page and authorize as ``username``."""
    session = requests.Session()
    login = session.get(f"{hub.url}/hub/login", timeout=30)
    assert 'href="/hub/gitlab/oauth_login' in login.text and "Sign in with GitLab" in login.text
    page = session.get(f"{hub.url}/hub/gitlab/oauth_login", timeout=30)
    assert page.url.startswith(f"{gitlab.url}/oauth/authorize?"), page.url
    assert 'id="user_login"' in page.text
    form = dict(parse_qsl(urlsplit(page.url).query))
    reply = session.post(
        f"{gitlab.url}/oauth/authorize",
        data={**form, "username": username, "decision": "authorize"},
        timeout=30,
    )
    return session, reply


@pytest.fixture(scope="module")
def admin_token(hub, gitlab):
    session, reply = sign_in(hub, gitlab, "boss")
    assert reply.status_code == 200, reply.text[:2000]
    answer = session.post(
        f"{hub.url}/hub/api/users/boss/tokens",
        json={"note": "tests", "expires_in": 3600},
        headers={"X-XSRFToken": session.cookies.get("_xsrf")},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["token"]


@pytest.fixture(scope="module")
def ada(hub, gitlab):
    session, reply = sign_in(hub, gitlab, "ada")
    assert reply.status_code == 200, reply.text[:2000]
    return session


def hub_user(hub, admin_token, name: str) -> requests.Response:
    return hub.api(f"/users/{name}", admin_token)


def test_a_member_signs_in_and_gets_gitlab_groups_and_encrypted_tokens(
    hub, gitlab, ada, admin_token
):
    user = hub_user(hub, admin_token, "ada").json()

    assert user["groups"] == ["lab/physics"]
    assert user["admin"] is False
    assert user["auth_state"]["access_token"] in gitlab.oauth.issued
    assert user["auth_state"]["gitlab_groups"] == ["lab/physics"]
    assert user["auth_state"]["refresh_token"]
    database = (hub.config.parent / "state" / "jupyterhub.sqlite").read_bytes()
    assert user["auth_state"]["access_token"].encode() not in database, "auth state not encrypted"


def test_an_admin_group_member_is_a_hub_admin(hub, admin_token):
    assert hub_user(hub, admin_token, "boss").json()["admin"] is True


def test_a_group_gated_profile_is_offered_only_to_its_members(hub, gitlab, ada):
    carol, reply = sign_in(hub, gitlab, "carol")
    assert reply.status_code == 200, reply.text[:2000]

    assert 'id="kh-profile-physics-big"' in ada.get(f"{hub.url}/hub/spawn", timeout=60).text
    carol_form = carol.get(f"{hub.url}/hub/spawn", timeout=60).text
    assert 'id="kh-profile-small"' in carol_form
    assert "physics-big" not in carol_form


REFUSED = {
    "outside the allowed groups": (
        "dave",
        "not a member of a GitLab group that may use this site (lab/chemistry, lab/physics)",
    ),
    "a reserved username": (
        "root",
        "Your account's username cannot be used here: the username 'root' is reserved",
    ),
}


@pytest.mark.parametrize(("username", "reason"), REFUSED.values(), ids=REFUSED)
def test_a_refused_user_sees_why_and_no_user_is_made(hub, gitlab, admin_token, username, reason):
    _, reply = sign_in(hub, gitlab, username)

    assert reply.status_code == 403
    assert reason in unescape(reply.text)
    assert hub_user(hub, admin_token, username).status_code == 404
    assert "Traceback" not in hub.log_text()


def test_a_wrong_application_secret_says_so_and_makes_no_user(hub, gitlab, admin_token):
    right = gitlab.application.secret
    gitlab.application.secret = "gloas-rotated-in-gitlab"
    try:
        _, reply = sign_in(hub, gitlab, "erin")
    finally:
        gitlab.application.secret = right

    assert reply.status_code == 503
    assert "GitLab did not accept this site's application id or secret" in unescape(reply.text)
    assert hub_user(hub, admin_token, "erin").status_code == 404
    assert "GitLab refused the application id" in hub.log_text()
    assert right not in hub.log_text()


def test_the_spawn_form_lists_the_users_own_gitlab_image_pinned(hub, gitlab, ada):
    form = ada.get(f"{hub.url}/hub/spawn", timeout=60).text
    project_id = gitlab.ada_project.id

    assert f'id="kh-environment-gitlab-{project_id}-{ADA_SHA[:12]}"' in form
    assert f"lab/ada-env/kioskhub-env:{ADA_SHA}@sha256:" in form
    assert "bob-secret" not in form
    assert BOB_SHA[:12] not in form


def test_an_expired_token_is_a_note_then_is_refreshed_before_a_spawn(hub, gitlab, ada, admin_token):
    before = hub_user(hub, admin_token, "ada").json()["auth_state"]
    gitlab.oauth.expire_now(before["access_token"])

    form = ada.get(f"{hub.url}/hub/spawn", timeout=60).text
    assert "GitLab no longer accepts your sign-in" in form
    assert 'id="kh-profile-small"' in form, "the form broke instead of showing a note"

    # A start refreshes the tokens first (refresh_pre_spawn); this one then fails on its choice.
    reply = ada.post(
        f"{hub.url}/hub/spawn",
        data={"environment": "no-such-environment", "profile": "small"},
        headers={"X-XSRFToken": ada.cookies.get("_xsrf")},
        timeout=60,
    )
    assert reply.status_code in (200, 400), reply.text[:2000]

    after = hub_user(hub, admin_token, "ada").json()["auth_state"]
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"], "the refresh token did not rotate"
    assert after["access_token"] in gitlab.oauth.issued
    assert f"gitlab-{gitlab.ada_project.id}-" in ada.get(f"{hub.url}/hub/spawn", timeout=60).text


def test_the_hub_does_not_start_without_the_application_secret(gitlab):
    folder = open_folder("gitlab-no-secret")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        auth={
            "type": "gitlab",
            "gitlab": {"url": gitlab.url, "client_id": "abc", "client_secret_env": SECRET_ENV},
        },
    )
    try:
        with pytest.raises(RuntimeError) as failed:
            start_hub(config, folder / "hub.log", timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    assert f"the environment variable {SECRET_ENV} is empty or unset" in str(failed.value)
    assert "Traceback" not in str(failed.value)
