"""The GitLab simulation serves git over smart HTTP with GitLab's access rules, to real git:
public projects anonymously, private ones to a reader's token in basic auth only."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import requests

from tests.gitlab_sim import GitLabSimulation

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(tmp_path):
    with GitLabSimulation() as simulation:
        ada, simulation.ada_token = simulation.model.add_user("ada")
        guest, simulation.guest_token = simulation.model.add_user("gus")
        _, simulation.other_token = simulation.model.add_user("bo")
        for path, visibility in (("lab/open", "public"), ("lab/secret", "private")):
            simulation.model.add_project(
                path, visibility=visibility, members={ada: "reporter", guest: "guest"}
            )
            simulation.git.publish_files(path, {"README.md": f"{path}\n"}, tmp_path / "served")
        yield simulation


def clone(url: str, dest: Path, token: str | None = None) -> subprocess.CompletedProcess:
    config = []
    if token:
        header = base64.b64encode(f"oauth2:{token}".encode()).decode()
        config = ["-c", f"http.extraHeader=Authorization: Basic {header}"]
    return subprocess.run(
        ["git", *config, "clone", "-q", url, str(dest)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0", "HOME": str(dest.parent)},
    )


def test_a_public_project_clones_without_credentials(sim, tmp_path):
    done = clone(f"{sim.url}/lab/open.git", tmp_path / "open")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "open" / "README.md").read_text() == "lab/open\n"


def test_a_private_project_asks_for_credentials_and_clones_with_a_readers_token(sim, tmp_path):
    anonymous = clone(f"{sim.url}/lab/secret.git", tmp_path / "anonymous")
    assert anonymous.returncode != 0
    assert "could not read Username" in anonymous.stderr
    reply = requests.get(f"{sim.url}/lab/secret.git/info/refs?service=git-upload-pack", timeout=5)
    assert (reply.status_code, reply.headers["WWW-Authenticate"]) == (401, 'Basic realm="GitLab"')

    done = clone(f"{sim.url}/lab/secret.git", tmp_path / "secret", sim.ada_token)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "secret" / "README.md").read_text() == "lab/secret\n"


@pytest.mark.parametrize("who", ["guest_token", "other_token"])
def test_a_guest_or_a_stranger_gets_not_found(sim, tmp_path, who):
    done = clone(f"{sim.url}/lab/secret.git", tmp_path / "secret", getattr(sim, who))
    assert done.returncode != 0
    assert "not found" in done.stderr.lower()
    assert sim.git.fetches[-1][2] == 404


def test_an_oauth_token_downloads_code_only_with_a_scope_that_allows_it(sim, tmp_path):
    sim.model.token_scopes[sim.ada_token] = ("read_user",)
    refused = clone(f"{sim.url}/lab/secret.git", tmp_path / "read-user", sim.ada_token)
    assert refused.returncode != 0 and sim.git.fetches[-1][2] == 401

    sim.model.token_scopes[sim.ada_token] = ("read_user", "read_api")
    done = clone(f"{sim.url}/lab/secret.git", tmp_path / "read-api", sim.ada_token)
    assert done.returncode == 0, done.stderr


def test_pushing_is_not_served(sim):
    reply = requests.get(f"{sim.url}/lab/open.git/info/refs?service=git-receive-pack", timeout=5)
    assert reply.status_code == 403
