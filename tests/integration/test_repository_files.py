"""The repository opens with its notebooks: build, launch, edit, push, rebuild, relaunch.

One hub with the builder service, as root. Ada registers a repository holding a notebook;
the local builder builds it; her server (kh-ada) starts with the notebook in
~/beam-notebooks and opens there. She edits the notebook; a new commit adds another; after
the rebuild her next server has the new notebook and still her edit. A hostile repository
links to /etc/shadow and to Bob's home, and Ada plants a link at its folder's name first:
the start is refused with a message, and once she removes it the links are checked out as
links that her server cannot read through; root reads and writes none of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import open_folder
from tests.integration.test_builder_environments import Env, git, start_builder_hub
from tests.support.hub_process import free_port, write_site_config

pytestmark = pytest.mark.integration

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "source": "print(1)",
            "outputs": [],
            "execution_count": None,
        }
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def notebook(text: str) -> str:
    cell = {**NOTEBOOK["cells"][0], "source": text}
    return json.dumps({**NOTEBOOK, "cells": [cell]}, indent=1) + "\n"


def repository(folder: Path, name: str, files: dict[str, str]) -> Path:
    repo = folder / name
    repo.mkdir()
    git(repo, "init", "--quiet")
    commit(repo, {"requirements.txt": "# the server's packages are enough\n", **files}, "first")
    return repo


def commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", message)


@pytest.fixture(scope="module")
def site():
    assert os.geteuid() == 0, "these tests need root: servers run as accounts of their own"
    folder = open_folder("files")
    (folder / "data").mkdir()
    config = write_site_config(
        folder,
        builder={"enabled": True, "port": free_port(), "allow_local_paths": True},
        spawner={"default_url": "/lab"},
    )
    hub = start_builder_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder}
    hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def build(user: Env, repo: Path, name: str, environment_id: int | None = None) -> dict:
    """Register (or rebuild) ``repo`` as ``name``; the environment once its build is ready."""
    if environment_id is None:
        reply = user.call("POST", "/environments", json={"name": name, "repository": str(repo)})
        assert reply.status_code == 201, reply.text
        environment_id = reply.json()["id"]
    else:
        reply = user.call("POST", f"/environments/{environment_id}/rebuild", json={})
        assert reply.status_code == 202, reply.text
    events = user.follow(environment_id)
    assert events[-1]["status"] == "ready", events[-5:]
    return user.call("GET", f"/environments/{environment_id}").json()


def run(user: Env, code: str) -> list[str]:
    result = user.user.execute(code, timeout=120)
    assert result["error"] is None, result
    return result["stdout"].split("\n")[:-1]


def test_the_repository_opens_with_its_notebooks_and_keeps_the_users_edits(site):
    ada = Env(site["hub"].url, "ada")
    repo = repository(site["folder"], "beam-notebooks", {"index.ipynb": notebook("print(1)")})
    environment = build(ada, repo, "beams")
    home = site["folder"] / "homes" / "ada"
    copy = home / "beam-notebooks"

    events = ada.user.spawn({"environment": "ada.beams"})
    assert events[-1].get("ready"), events[-3:]
    opening = ada.user.server("/", allow_redirects=False)
    assert urlsplit(opening.headers["Location"]).path == "/user/ada/lab/tree/beam-notebooks"
    assert json.loads((copy / "index.ipynb").read_text()) == json.loads(notebook("print(1)"))
    assert copy.stat().st_uid == (copy / "index.ipynb").stat().st_uid == home.stat().st_uid
    edited = notebook("print('ada was here')")
    assert run(ada, f"open('beam-notebooks/index.ipynb', 'w').write({edited!r}); print('ok')") == [
        "ok"
    ]
    ada.user.stop_server()

    commit(repo, {"fit.ipynb": notebook("fit()")}, "a second notebook")
    rebuilt = build(ada, repo, "beams", environment["id"])
    assert rebuilt["source"]["commit_sha"] != environment["source"]["commit_sha"]
    venv = Path(rebuilt["artifact"]["venv_path"])
    assert venv == Path(environment["artifact"]["venv_path"]), "same spec: the venv is reused"
    kept = sorted(path.name for path in (venv / "kioskhub-repository").iterdir())
    assert kept == sorted(
        f"{build['source']['commit_sha']}.git" for build in (environment, rebuilt)
    )
    for name in kept:
        assert os.lstat(venv / "kioskhub-repository" / name).st_uid == 0
        assert not (venv / "kioskhub-repository" / name / "shallow").exists(), "whole history"
    ada.user.spawn({"environment": "ada.beams"})
    listing = ada.user.server("/api/contents/beam-notebooks").json()
    ada.user.stop_server()

    assert sorted(item["name"] for item in listing["content"]) == [
        "fit.ipynb",
        "index.ipynb",
        "requirements.txt",
    ]
    assert (copy / "index.ipynb").read_text() == edited
    assert json.loads((copy / "fit.ipynb").read_text()) == json.loads(notebook("fit()"))


def test_hostile_links_reach_nothing_and_a_link_at_the_folders_name_is_refused(site):
    ada, bob = Env(site["hub"].url, "ada"), Env(site["hub"].url, "bob")
    bob.user.spawn({"environment": "default"})
    bob_notes = run(bob, "import os; open('notes.txt', 'w').write('bob'); print(os.getcwd())")[0]
    bob.user.stop_server()
    bob_home = Path(bob_notes)
    repo = site["folder"] / "hostile-repo"
    repo.mkdir()
    (repo / "shadow").symlink_to("/etc/shadow")
    (repo / "bob").symlink_to(bob_home)
    git(repo, "init", "--quiet")
    commit(repo, {"requirements.txt": "\n", "README.md": "links\n"}, "links")
    build(ada, repo, "hostile")
    shadow = os.stat("/etc/shadow")
    bob_before = {name: os.lstat(bob_home / name) for name in os.listdir(bob_home)}
    shadow_sum = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()

    ada.user.spawn({"environment": "default"})
    run(ada, "import os; os.symlink('/etc', 'hostile-repo'); print('planted')")
    ada.user.stop_server()
    refused = ada.user.api("/users/ada/server", "POST", json={"environment": "ada.hostile"})
    assert refused.status_code == 500, refused.text
    assert "~/hostile-repo is a symbolic link" in refused.json()["message"]
    assert "Rename or remove ~/hostile-repo" in refused.json()["message"]

    ada.user.spawn({"environment": "default"})
    run(ada, "import os; os.unlink('hostile-repo'); print('removed')")
    ada.user.stop_server()
    ada.user.spawn({"environment": "ada.hostile"})
    reads = run(
        ada,
        "import os\n"
        "for link, path in [('shadow', 'shadow'), ('bob', 'bob/notes.txt')]:\n"
        "    try:\n"
        "        open('hostile-repo/' + path).read(); print('READ')\n"
        "    except OSError as error:\n"
        "        print(type(error).__name__, os.path.islink('hostile-repo/' + link))\n",
    )
    ada.user.stop_server()

    assert reads == ["PermissionError True", "PermissionError True"]
    after = os.stat("/etc/shadow")
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        shadow.st_uid,
        shadow.st_gid,
        shadow.st_mode,
    )
    assert hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest() == shadow_sum
    assert {name: os.lstat(bob_home / name) for name in os.listdir(bob_home)} == bob_before
    assert (bob_home / "notes.txt").read_text() == "bob"
