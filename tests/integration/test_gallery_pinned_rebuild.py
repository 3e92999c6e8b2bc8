"""A version whose environment was rebuilt since: "Open" rebuilds the pinned commit beside it.

One hub with the gallery and the builder (real venv builds). Ada registers a repository for
her group, launches it, and publishes a notebook pinned to that build; then she changes the
repository and rebuilds, and the pinned venv is removed from disk. Bob, in her group, presses
"Open": the version page says it is rebuilding the environment from the pinned commit, with
the build's progress, refreshing itself; once built it opens his server in the rebuild, whose
venv has the pinned content hash, while Ada's environment keeps its new build. A user's own
token cannot ask for pinned builds, another reader's page cannot follow Bob's, and a version
altered to name a commit its environment was never built from is refused.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_builder_environments import git
from tests.integration.test_gallery_service import SERVICE, call, publication
from tests.integration.test_gallery_threads import TOKEN
from tests.support.hub_process import free_port, remove_site_folder, start_hub, write_site_config
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration
BUILDER = "/services/environments/api"
REFRESH_TO = re.compile(r'<meta http-equiv="refresh" content="0; url=([^"]+)">')


def builder(user, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{user.hub_url}{BUILDER}{path}", timeout=60,
        headers={"Authorization": f"token {user.token}"}, **kwargs,
    )  # fmt: skip


def built(user, environment_id: int, timeout: float = 600) -> dict:
    """The environment once its latest own build has finished."""
    deadline = time.monotonic() + timeout
    while True:
        model = builder(user, "GET", f"/environments/{environment_id}").json()
        if model["status"] in ("ready", "failed"):
            return model
        assert time.monotonic() < deadline, model
        time.sleep(2)


@pytest.fixture(scope="module")
def site():
    folder = open_folder("gallery-pinned")
    write_sample_data(folder / "data")
    repo = folder / "analysis-repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "requirements.txt").write_text("tomli-w\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "Analysis environment")
    config = write_site_config(
        folder,
        gallery={"enabled": True, "port": free_port()},
        builder={
            "enabled": True, "port": free_port(), "allow_local_paths": True,
            "build_timeout": 600,
        },
        groups={"physics": ["ada", "bob"]},
    )  # fmt: skip
    hub = start_hub(config, folder / "hub.log")
    deadline = time.monotonic() + 60
    while requests.get(f"{hub.url}{BUILDER}/openapi.json", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, hub.log_text()[-3000:]
        time.sleep(0.5)
    users = {name: signed_in(hub.url, name, SHARED_PASSWORD) for name in ("ada", "bob")}
    yield {"hub": hub, "folder": folder, "repo": repo, **users}
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def test_open_rebuilds_the_pinned_commit_beside_the_environment(site):
    hub, ada, bob, repo, folder = (site[k] for k in ("hub", "ada", "bob", "repo", "folder"))
    registered = builder(
        ada, "POST", "/environments",
        json={"name": "tomli", "repository": str(repo), "visibility": "group:physics"},
    )  # fmt: skip
    assert registered.status_code == 201, registered.text
    environment_id = registered.json()["id"]
    first = built(ada, environment_id)
    assert first["status"] == "ready", first
    pinned_commit = git(repo, "rev-parse", "HEAD")
    pinned_hash = first["artifact"]["content_hash"]

    # Ada publishes from a server running it: the version is pinned to that build.
    assert ada.spawn({"environment": "ada.tomli"})[-1].get("ready"), hub.log_text()[-3000:]
    made = call(ada, "POST", "/entries", json=publication("Fit", "a = 1", visibility="site"))
    assert made.status_code == 201, made.text
    entry = made.json()["id"]
    pinning = call(ada, "GET", f"/entries/{entry}/versions/1").json()["pinning"]
    assert (pinning["content_hash"], pinning["commit"]) == (pinned_hash, pinned_commit)
    ada.stop_server()

    # She changes the repository and rebuilds; the pinned venv is gone from disk.
    (repo / "requirements.txt").write_text("tomli-w\ntomli\n")
    git(repo, "commit", "--quiet", "-am", "Add tomli")
    assert builder(ada, "POST", f"/environments/{environment_id}/rebuild").status_code == 202
    second = built(ada, environment_id)
    assert second["status"] == "ready", second
    assert second["artifact"]["content_hash"] != pinned_hash
    shutil.rmtree(first["artifact"]["venv_path"])

    # Bob's page says Open rebuilds the pinned commit; pressing it starts that rebuild.
    page_url = f"{hub.url}{SERVICE}/entries/{entry}/v1"
    page = bob.http.get(page_url, timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    assert f"Open rebuilds commit {pinned_commit} beside it" in page.text
    token = TOKEN.search(page.text).group(1)
    opened = bob.http.post(f"{page_url}/open", data={"_xsrf": token}, allow_redirects=False)
    assert opened.status_code == 303, opened.text[-2000:]
    following = urlsplit(opened.headers["Location"])
    assert following.path == f"{SERVICE}/entries/{entry}/v1"
    build_id = int(parse_qs(following.query)["rebuild"][0])
    rebuilding = bob.http.get(hub.url + opened.headers["Location"], timeout=30)
    assert (
        "The environment this version was pinned to is gone; rebuilding it from commit "
        f"{pinned_commit} …"
    ) in rebuilding.text, rebuilding.text[-3000:]
    assert '<meta http-equiv="refresh" content="3">' in rebuilding.text
    assert 'id="kh-gallery-rebuild-progress"' in rebuilding.text

    # The page follows the build until it sends the browser to the hub's spawn URL.
    deadline = time.monotonic() + 600
    while not (target := REFRESH_TO.search(page := bob.http.get(
        hub.url + opened.headers["Location"], timeout=30
    ).text)):  # fmt: skip
        assert "failed" not in page.split('id="kh-gallery-rebuild"')[-1][:600], page[-3000:]
        assert time.monotonic() < deadline, page[-3000:]
        time.sleep(3)
    assert f"Rebuilt from commit {pinned_commit}: the same build as pinned" in page
    spawn = urlsplit(target.group(1).replace("&amp;", "&"))
    pin_name = f"pin-{pinned_hash[:24]}"
    assert spawn.path == "/hub/spawn/bob"
    assert parse_qs(spawn.query)["opt-environment"] == [pin_name]
    started = bob.http.get(hub.url + target.group(1).replace("&amp;", "&"), timeout=120)
    assert started.status_code == 200, started.text[-2000:]
    assert bob.wait_ready()[-1].get("ready"), hub.log_text()[-3000:]
    server = bob.api("/users/bob").json()["servers"][""]
    assert server["user_options"]["environment"] == pin_name
    ran = bob.execute("import sys, tomli_w; print(sys.prefix)", timeout=120)
    assert ran["error"] is None, ran
    assert Path(ran["stdout"].strip()).name == pinned_hash
    bob.stop_server()

    # Ada's environment keeps its new build; the pinned one is offered to Bob alone.
    mine = builder(ada, "GET", f"/environments/{environment_id}").json()
    assert mine["artifact"]["content_hash"] == second["artifact"]["content_hash"]
    assert mine["status"] == "ready" and mine["latest_build"]["pinned"] is False
    assert pin_name in bob.http.get(f"{hub.url}/hub/spawn", timeout=30).text
    assert pin_name not in ada.http.get(f"{hub.url}/hub/spawn", timeout=30).text

    # Another reader's page cannot follow (or open) Bob's rebuild.
    ada_page = ada.http.get(hub.url + opened.headers["Location"], timeout=30).text
    assert f"no pinned build {build_id} for ada" in html.unescape(ada_page), ada_page[-3000:]
    assert not REFRESH_TO.search(ada_page) and "/hub/spawn/" not in ada_page

    # A user's token may not ask for a pinned build, of any commit.
    asked = builder(
        bob, "POST", "/pinned-builds",
        json={"environment": "ada.tomli", "commit": pinned_commit, "user": "bob"},
    )  # fmt: skip
    assert asked.status_code == 403, asked.text
    assert "pinned builds are asked for by the gallery alone" in asked.json()["message"]
    followed = builder(bob, "GET", f"/pinned-builds/{build_id}?user=bob")
    assert followed.status_code == 403

    # A version altered to name a commit never built for the environment: refused.
    never = "f" * 40
    with sqlite3.connect(folder / "state" / "gallery.sqlite") as db:
        altered = dict(pinning, commit=never)
        db.execute(
            "UPDATE versions SET pinning = ? WHERE entry_id = ? AND number = 1",
            (json.dumps(altered), entry),
        )
    refused = bob.http.post(f"{page_url}/open", data={"_xsrf": token}, allow_redirects=False)
    assert refused.status_code == 403, refused.text[-2000:]
    assert f"commit {never!r} was never built for 'ada.tomli'" in html.unescape(refused.text)
