"""Journey J2 end to end: register a repository, watch the build, launch it, share it.

One hub with the builder service runs for the module. A real git repository made here (a
``requirements.txt`` with tomli-w and a ``postBuild`` that writes a file) is built into a
venv by the local builder, then launched through the hub; a kernel imports the package and
reads the file. Then: a cache hit, a failing rebuild that leaves the ready environment
intact, hostile sources, and who may see, share and delete what.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from jupyterhub import __version__ as jupyterhub_version

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.image_builder.catalog import SITE_OWNER
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import free_port, start_hub, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
SERVICE = "/services/environments"
POST_BUILD = """#!/bin/bash
set -e
echo "made by postBuild" > "$VIRTUAL_ENV/share/kioskhub-postbuild.txt"
if env | grep -q '^JUPYTERHUB_'; then echo "HUB VARIABLES LEAKED"; else echo "no hub variables"; fi
if cat {secrets} > /dev/null 2>&1; then echo "SECRETS READABLE"; else echo "secrets unreadable"; fi
shared="$(python -c 'import jupyterlab; print(jupyterlab.__file__)')"
if echo "# changed" >> "$shared" 2>/dev/null; then echo "LAYER WRITABLE"
else echo "layer read-only"; fi
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Ada", "-c", "user.email=ada@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repository(folder: Path, secrets: Path) -> Path:
    """A repository with a requirements.txt (tomli-w) and a postBuild, committed."""
    repo = folder / "analysis-repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "requirements.txt").write_text("tomli-w\n")
    (repo / "postBuild").write_text(POST_BUILD.format(secrets=secrets))
    (repo / "README.md").write_text("An analysis environment.\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "Analysis environment")
    return repo


class Env:
    """A user of the builder service's API, with a hub session for the spawn form."""

    def __init__(self, hub_url: str, name: str, password: str = SHARED_PASSWORD):
        self.user = UserSession(hub_url, name)
        assert self.user.login(password).status_code == 200
        self.user.request_token()
        self.base = f"{hub_url}{SERVICE}/api"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.base}{path}",
            timeout=60,
            headers={"Authorization": f"token {self.user.token}", **kwargs.pop("headers", {})},
            **kwargs,
        )

    def follow(self, environment_id: int, timeout: float = 400) -> list[dict]:
        """The live log of the latest build, as Server-Sent Events, until it is done."""
        events = []
        with requests.get(
            f"{self.base}/environments/{environment_id}/log",
            headers={"Authorization": f"token {self.user.token}", "Accept": "text/event-stream"},
            stream=True,
            timeout=timeout,
        ) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("done"):
                        break
        return events


def start_builder_hub(config: Path, log: Path):
    """A hub of ``config``, once its builder service answers."""
    hub = start_hub(config, log)
    deadline = time.monotonic() + 60
    while requests.get(f"{hub.url}{SERVICE}/api/openapi.json", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"the builder service never answered:\n{hub.log_text()}"
        time.sleep(0.5)
    return hub


@pytest.fixture(scope="module")
def site():
    folder = open_folder("builder")
    write_sample_data(folder / "data")
    repo = make_repository(folder, folder / "state" / "secrets.json")
    config = write_site_config(
        folder,
        auth={"admin_password": ADMIN_PASSWORD},
        builder={
            "enabled": True,
            "port": free_port(),
            "allow_local_paths": True,
            "build_timeout": 600,
        },
        groups={"physics": ["ada", "cy"]},
    )
    hub = start_builder_hub(config, folder / "hub.log")
    yield {"hub": hub, "repo": repo, "folder": folder}
    hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ada(site):
    return Env(site["hub"].url, "ada")


def test_register_watch_the_build_and_launch_it(site, ada):
    reply = ada.call(
        "POST", "/environments", json={"name": "tomli", "repository": str(site["repo"])}
    )
    assert reply.status_code == 201, reply.text
    registered = reply.json()
    assert (registered["status"], registered["spawn_name"]) == ("queued", "ada.tomli")

    events = ada.follow(registered["id"])
    done = events[-1]
    assert done["status"] == "ready", done
    lines = [e["line"] for e in events if "line" in e]
    percents = [e["progress"] for e in events if "progress" in e]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any("Preparing the server layer" in line for line in lines)
    assert any("Installing the server packages" in line for line in lines)
    assert any("kernel said 1+1 = 2" in line for line in lines)
    assert "no hub variables" in lines
    assert "layer read-only" in lines
    if os.geteuid() == 0:
        assert "secrets unreadable" in lines

    environment = ada.call("GET", f"/environments/{registered['id']}").json()
    assert environment["launchable"] and environment["status"] == "ready"
    assert environment["source"]["commit_sha"] == git(site["repo"], "rev-parse", "HEAD")
    venv = Path(environment["artifact"]["venv_path"])
    assert venv.parent == site["folder"] / "state" / "environments"

    spawn_form = ada.user.http.get(f"{site['hub'].url}/hub/spawn", timeout=30).text
    assert 'value="ada.tomli"' in spawn_form
    ada.user.spawn({"environment": "ada.tomli"})
    try:
        result = ada.user.execute(
            "import sys, pathlib, tomli_w\n"
            "print(tomli_w.dumps({'beam': 1}).strip())\n"
            "print((pathlib.Path(sys.prefix) / 'share/kioskhub-postbuild.txt').read_text())\n"
            "print(sys.prefix)",
            timeout=120,
        )
    finally:
        ada.user.stop_server()
    assert result["error"] is None, result
    assert result["stdout"].split() == ["beam", "=", "1", "made", "by", "postBuild", str(venv)]


def test_a_second_repository_starts_from_the_prepared_server_layer(site, ada):
    repo = site["folder"] / "second-repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "requirements.txt").write_text("tomli-w\n# a second analysis\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "Second analysis")
    reply = ada.call("POST", "/environments", json={"name": "second", "repository": str(repo)})
    events = ada.follow(reply.json()["id"])
    lines = [e["line"] for e in events if "line" in e]
    assert events[-1]["status"] == "ready", lines
    assert not any("Preparing the server layer" in line for line in lines)
    assert "The server packages are the server layer's, unchanged: checking a kernel." in lines
    assert any("kernel said 1+1 = 2" in line for line in lines)

    venv = Path(
        ada.call("GET", f"/environments/{reply.json()['id']}").json()["artifact"]["venv_path"]
    )
    layers = list((site["folder"] / "state" / "environments" / "server-layers").iterdir())
    assert len(layers) == 1
    module = "lib/python{}.{}/site-packages/jupyterlab/__init__.py".format(*sys.version_info)
    assert os.path.samefile(venv / module, layers[0] / module), "not linked from the layer"
    assert "# changed" not in (venv / module).read_text()
    script = (venv / "bin" / "jupyterhub-singleuser").read_text().splitlines()[0]
    assert script == f"#!{venv}/bin/python"
    version = subprocess.run(
        [venv / "bin" / "jupyterhub-singleuser", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.stdout.strip() == jupyterhub_version, version.stderr


def test_cache_hit_and_a_failed_rebuild_that_keeps_the_ready_environment(site, ada):
    started = time.monotonic()
    reply = ada.call(
        "POST", "/environments", json={"name": "tomli-again", "repository": str(site["repo"])}
    )
    events = ada.follow(reply.json()["id"])
    elapsed = time.monotonic() - started
    assert events[-1]["status"] == "ready"
    assert any("Reusing the environment" in e.get("line", "") for e in events)
    assert elapsed < 1.0, f"a cache hit took {elapsed:.2f} s"

    tomli = next(
        e for e in ada.call("GET", "/environments").json()["environments"] if e["name"] == "tomli"
    )
    (site["repo"] / "requirements.txt").write_text("tomli-w\nkioskhub-no-such-package-zz9\n")
    git(site["repo"], "commit", "--quiet", "-am", "A package that does not exist")
    assert ada.call("POST", f"/environments/{tomli['id']}/rebuild", json={}).status_code == 202
    events = ada.follow(tomli["id"])
    assert events[-1]["status"] == "failed"
    assert "kioskhub-no-such-package-zz9" in events[-1]["error"]

    after = ada.call("GET", f"/environments/{tomli['id']}").json()
    assert after["status"] == "failed" and after["launchable"]
    assert after["artifact"] == tomli["artifact"]
    assert after["source"]["commit_sha"] == tomli["source"]["commit_sha"]
    assert [b["status"] for b in after["builds"]] == ["ready", "failed"]
    failed_log = ada.call("GET", f"/environments/{tomli['id']}/log").text
    assert "kioskhub-no-such-package-zz9" in failed_log and "Build failed" in failed_log
    assert 'value="ada.tomli"' in ada.user.http.get(f"{site['hub'].url}/hub/spawn").text


@pytest.mark.parametrize(
    "body, message",
    [
        ({"repository": "--upload-pack=touch /tmp/x"}, "command-line option"),
        ({"repository": "ext::sh"}, "transport helpers"),
        ({"repository": "file:///etc"}, "file:// URLs are not allowed"),
        ({"repository": "http://169.254.169.254/x"}, "scheme 'http' is not allowed"),
        ({"repository": "https://evil.example.com/x.git"}, "is not allowed"),
        ({"repository": "/tmp", "ref": "$(id)"}, "characters that refs may not use"),
        ({"repository": "/tmp", "ref": "-x"}, "may not start with '-'"),
        ({"repository": "/tmp", "subdir": "../etc"}, "may not contain '..'"),
        ({"repository": "/tmp", "name": "Bad Name"}, "invalid environment name"),
    ],
)
def test_hostile_sources_are_refused_by_the_api(ada, body, message):
    reply = ada.call("POST", "/environments", json={"name": "hostile", **body})
    assert reply.status_code == 400
    assert message in reply.json()["message"]


def test_who_may_see_share_and_delete(site, ada):
    url = site["hub"].url
    bob, cy = Env(url, "bob"), Env(url, "cy")
    admin = Env(url, "admin", ADMIN_PASSWORD)
    mine = {e["name"]: e for e in ada.call("GET", "/environments").json()["environments"]}
    tomli = mine["tomli"]["id"]

    seen_by_bob = bob.call("GET", "/environments").json()["environments"]
    assert {e["owner"] for e in seen_by_bob} == {SITE_OWNER}
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/rebuild"), ("GET", "/log")]:
        assert bob.call(method, f"/environments/{tomli}{path}").status_code == 404
    assert requests.get(f"{ada.base}/environments", timeout=30).status_code == 403

    assert (
        ada.call(
            "PUT", f"/environments/{tomli}/visibility", json={"visibility": "group:chem"}
        ).status_code
        == 403
    )
    assert (
        ada.call(
            "PUT", f"/environments/{tomli}/visibility", json={"visibility": "site"}
        ).status_code
        == 403
    )
    shared = ada.call(
        "PUT", f"/environments/{tomli}/visibility", json={"visibility": "group:physics"}
    )
    assert shared.json()["visibility"] == "group:physics"
    assert cy.call("GET", f"/environments/{tomli}").status_code == 200
    assert cy.call("DELETE", f"/environments/{tomli}").status_code == 403
    assert bob.call("GET", f"/environments/{tomli}").status_code == 404
    assert 'value="ada.tomli"' in cy.user.http.get(f"{url}/hub/spawn").text
    assert 'value="ada.tomli"' not in bob.user.http.get(f"{url}/hub/spawn").text
    assert 'value="ada.tomli-again"' not in cy.user.http.get(f"{url}/hub/spawn").text

    names = {e["spawn_name"] for e in admin.call("GET", "/environments").json()["environments"]}
    assert {"ada.tomli", "ada.tomli-again"} <= names
    assert ada.call("DELETE", f"/environments/{mine['tomli-again']['id']}").status_code == 204
    assert ada.call("GET", f"/environments/{mine['tomli-again']['id']}").status_code == 404

    document = requests.get(f"{ada.base}/openapi.json", timeout=30).json()
    assert "/api/environments/{id}/log" in document["paths"]
    page = ada.user.http.get(f"{url}{SERVICE}/", timeout=60)
    assert page.status_code == 200 and "Environments from your repositories" in page.text
