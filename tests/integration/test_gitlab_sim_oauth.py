"""The GitLab simulation's OAuth provider keeps GitLab's documented rules: codes for the
registered redirect URI only, single-use codes, client authentication, expiring access
tokens, rotating refresh tokens, and the tokens as Bearer on the API."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.gitlab_sim import GitLabSimulation

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:9/hub/oauth_callback"


@pytest.fixture
def gitlab():
    with GitLabSimulation(token_lifetime=1) as simulation:
        simulation.ada, _ = simulation.model.add_user("ada")
        simulation.model.add_group("lab/physics", {simulation.ada: "reporter"})
        simulation.model.add_group("lab/other")
        simulation.app = simulation.model.add_application("KioskHub", CALLBACK)
        yield simulation


def authorize(gitlab, username="ada", **overrides) -> requests.Response:
    form = {
        "client_id": gitlab.app.client_id,
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "state": "s-123",
        "scope": "read_user read_api",
        "username": username,
        "decision": "authorize",
        **overrides,
    }
    return requests.post(
        f"{gitlab.url}/oauth/authorize", data=form, allow_redirects=False, timeout=10
    )


def code_of(reply: requests.Response) -> str:
    assert reply.status_code == 302, reply.text
    location = reply.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s-123"]
    return query["code"][0]


def token(gitlab, **form) -> requests.Response:
    return requests.post(f"{gitlab.url}/oauth/token", data=form, timeout=10)


def exchange(gitlab, code: str, secret: str | None = None) -> requests.Response:
    return token(
        gitlab,
        grant_type="authorization_code",
        code=code,
        redirect_uri=CALLBACK,
        client_id=gitlab.app.client_id,
        client_secret=secret or gitlab.app.secret,
    )


def refresh(gitlab, refresh_token: str) -> requests.Response:
    return token(
        gitlab,
        grant_type="refresh_token",
        refresh_token=refresh_token,
        client_id=gitlab.app.client_id,
        client_secret=gitlab.app.secret,
    )


def api(gitlab, path: str, access_token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}"}
    return requests.get(f"{gitlab.url}/api/v4{path}", headers=headers, timeout=10)


def test_the_code_flow_gives_a_token_for_the_user_and_their_groups(gitlab):
    page = requests.get(
        f"{gitlab.url}/oauth/authorize",
        params={"client_id": gitlab.app.client_id, "redirect_uri": CALLBACK, "state": "s-123"},
        timeout=10,
    )
    assert page.status_code == 200 and 'name="username"' in page.text

    answer = exchange(gitlab, code_of(authorize(gitlab))).json()

    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 1
    assert answer["scope"] == "read_user read_api"
    assert api(gitlab, "/user", answer["access_token"]).json()["username"] == "ada"
    groups = api(gitlab, "/groups?min_access_level=10", answer["access_token"]).json()
    assert [g["full_path"] for g in groups] == ["lab/physics"]


def test_a_code_works_once_and_only_with_the_right_secret(gitlab):
    code = code_of(authorize(gitlab))

    wrong = exchange(gitlab, code, secret="gloas-wrong")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert exchange(gitlab, code).status_code == 200
    again = exchange(gitlab, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_foreign_redirect_uri_gets_an_error_page_not_a_redirect(gitlab):
    reply = authorize(gitlab, redirect_uri="https://attacker.example/steal")

    assert reply.status_code == 400
    assert "The redirect URI included is not valid." in reply.text
    assert "Location" not in reply.headers


def test_an_unknown_user_and_a_denial(gitlab):
    assert authorize(gitlab, username="mallory").status_code == 401
    denied = authorize(gitlab, decision="deny")
    assert parse_qs(urlsplit(denied.headers["Location"]).query)["error"] == ["access_denied"]
    wider = authorize(gitlab, scope="api")
    assert parse_qs(urlsplit(wider.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_access_tokens_expire_and_refresh_tokens_rotate(gitlab):
    first = exchange(gitlab, code_of(authorize(gitlab))).json()
    time.sleep(1.1)

    assert api(gitlab, "/user", first["access_token"]).status_code == 401
    second = refresh(gitlab, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert api(gitlab, "/user", second["access_token"]).status_code == 200
    reused = refresh(gitlab, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


def test_a_token_does_only_what_its_scopes_allow(gitlab):
    read_user = exchange(gitlab, code_of(authorize(gitlab, scope="read_user"))).json()

    assert api(gitlab, "/user", read_user["access_token"]).status_code == 200
    refused = api(gitlab, "/groups", read_user["access_token"])
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
