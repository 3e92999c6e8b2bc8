"""Private repositories on the site's GitLab build with the asking user's own GitLab token.

One hub with the builder service and a GitLab simulation that serves git over HTTP (real
``git http-backend``) run for the module. Each user's GitLab token is put in their auth_state
through the hub's admin API, as GitLab sign-in keeps it. A reader of the private project builds
it; a user without access is refused before anything is recorded or fetched; the token is in no
process's command line during the fetch, nowhere in the state folder (catalog and all), the
build log, the hub's log or an error; and the repository's own postBuild, looking for it in its
environment, its files and every process it can read, finds nothing.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import open_folder
from tests.gitlab_sim import GitLabSimulation
from tests.gitlab_sim.oauth import Grant
from tests.integration.test_builder_environments import ADMIN_PASSWORD, Env, start_builder_hub
from tests.support.hub_process import free_port, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

PROJECT = "lab/private-analysis"
SEEN = "share/kioskhub-seen.txt"
POST_BUILD = f"""#!/bin/bash
# What a build step can read: its environment, its home and checkout, every process it reaches.
{{
  env
  find "$HOME" "$PWD" -type f -exec cat {{}} + 2>/dev/null
  for proc in /proc/[0-9]*; do
    tr '\\0' '\\n' < "$proc/environ" 2>/dev/null
    tr '\\0' ' ' < "$proc/cmdline" 2>/dev/null
  done
}} > "$VIRTUAL_ENV/{SEEN}"
echo "postBuild looked around"
"""


def oauth_token(gitlab: GitLabSimulation, user) -> str:
    """An access token that the simulated GitLab issues to ``user`` by its OAuth code flow,
    with GitLab sign-in's default scopes (read_user, read_api)."""
    redirect = "https://kioskhub.example.org/hub/oauth_callback"
    application = gitlab.model.add_application("KioskHub", redirect)
    code = gitlab.oauth.new_code(Grant(application, user, application.scopes, redirect))
    return gitlab.oauth.exchange_code(application, code, redirect)["access_token"]


class CommandLineWatch:
    """Reads every process's command line, as fast as it can, until stopped."""

    def __init__(self, secret: str, marker: str):
        self.secret, self.marker = secret, marker
        self.leaks: list[str] = []
        self.fetches_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if self.secret in text and text not in self.leaks:
                    self.leaks.append(text)
                if self.marker in text and "fetch" in text:
                    self.fetches_seen += 1


@pytest.fixture(scope="module")
def site():
    folder = open_folder("private-repos")
    write_sample_data(folder / "data")
    with GitLabSimulation() as gitlab:
        gitlab.url = gitlab.url.replace("127.0.0.1", "localhost")
        ada, _ = gitlab.model.add_user("ada")
        bo, _ = gitlab.model.add_user("bo")
        ada_token, bo_token = oauth_token(gitlab, ada), oauth_token(gitlab, bo)
        gitlab.model.add_project(PROJECT, visibility="private", members={ada: "reporter"})
        gitlab.git.publish_files(
            PROJECT,
            {"postBuild": POST_BUILD, "README.md": "A private analysis.\n"},
            folder / "served",
        )
        config = write_site_config(
            folder,
            auth={"admin_password": ADMIN_PASSWORD},
            builder={
                "enabled": True,
                "port": free_port(),
                "allowed_schemes": ["http"],
                "allowed_hosts": ["localhost"],
                "build_timeout": 600,
            },
            gitlab={"url": gitlab.url},
        )
        hub = start_builder_hub(config, folder / "hub.log")
        admin = UserSession(hub.url, "admin")
        assert admin.login(ADMIN_PASSWORD).status_code == 200
        admin.request_token()
        users = {}
        for name, token in (("ada", ada_token), ("bo", bo_token)):
            users[name] = Env(hub.url, name)
            reply = admin.api(
                f"/users/{name}", "PATCH", json={"auth_state": {"access_token": token}}
            )
            assert reply.status_code == 200, reply.text
        yield {
            "hub": hub,
            "gitlab": gitlab,
            "folder": folder,
            "url": f"{gitlab.url}/{PROJECT}.git",
            "tokens": {"ada": ada_token, "bo": bo_token},
            **users,
        }
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def register(user: Env, url: str, name: str) -> requests.Response:
    return user.call("POST", "/environments", json={"name": name, "repository": url})


def test_a_reader_builds_the_private_project_with_their_token_and_it_leaks_nowhere(site):
    ada, token, gitlab = site["ada"], site["tokens"]["ada"], site["gitlab"]
    gitlab.git.delay = 0.3  # long enough to watch the fetch
    with CommandLineWatch(token, f"{PROJECT}.git") as watch:
        reply = register(ada, site["url"], "private-analysis")
        assert reply.status_code == 201, reply.text
        events = ada.follow(reply.json()["id"])
    lines = [event["line"] for event in events if "line" in event]
    assert events[-1]["status"] == "ready", lines
    assert "postBuild looked around" in lines
    assert not any("history could not be fetched" in line for line in lines)
    assert ("lab/private-analysis", "ada", 200) in gitlab.git.fetches
    assert watch.fetches_seen, "the watch never saw git fetch: it proves nothing"
    assert watch.leaks == []

    environment = ada.call("GET", f"/environments/{reply.json()['id']}").json()
    assert environment["status"] == "ready" and environment["launchable"]
    spawn_form = ada.user.http.get(f"{site['hub'].url}/hub/spawn", timeout=30).text
    assert 'value="ada.private-analysis"' in spawn_form

    seen = (Path(environment["artifact"]["venv_path"]) / SEEN).read_text(errors="replace")
    assert "PATH=" in seen and "[core]" in seen, "postBuild read its env and its checkout"
    assert token not in seen
    log = ada.call("GET", f"/environments/{environment['id']}/log").text
    assert token not in log
    for path in (site["folder"] / "state").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in site["hub"].log_text()

    fetched = len(gitlab.git.fetches)
    rebuilt = ada.call("POST", f"/environments/{environment['id']}/rebuild")
    assert rebuilt.status_code == 202, rebuilt.text
    assert ada.follow(environment["id"])[-1]["status"] == "ready"
    assert ("lab/private-analysis", "ada", 200) in gitlab.git.fetches[fetched:]


def test_a_user_without_access_is_refused_and_nothing_is_built_or_fetched(site):
    bo, gitlab = site["bo"], site["gitlab"]
    reply = register(bo, site["url"], "not-mine")
    assert reply.status_code == 403
    message = reply.json()["message"]
    assert f"cannot read the code of the GitLab project {PROJECT}" in message
    assert "ask one of its maintainers for the Reporter role" in message
    assert site["tokens"]["bo"] not in message
    listed = bo.call("GET", "/environments").json()["environments"]
    assert [environment for environment in listed if environment["owner"] == "bo"] == []
    assert not [fetch for fetch in gitlab.git.fetches if fetch[1] == "bo"]


def test_a_user_without_a_gitlab_token_is_told_to_sign_in_with_gitlab(site):
    cy = Env(site["hub"].url, "cy")
    reply = register(cy, site["url"], "anonymous")
    assert reply.status_code == 201, reply.text
    events = cy.follow(reply.json()["id"])
    assert events[-1]["status"] == "failed"
    assert "sign in with GitLab, then rebuild" in events[-1]["error"]
