"""A private environment is readable only by those who may launch it; sharing opens it.

One hub with the builder service, as root: ada builds a private environment whose postBuild
installs a module of hers. Bob's server (his own account, kh-bob) cannot list or read ada's
venv, and neither can a process of kh-bob; ada's server starts from it and imports the module.
Once ada shares it with a group bob is in, bob's server launches it and imports it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kioskhub.hub.schema.builder import BuilderSettings, environment_gids
from tests.conftest import open_folder
from tests.integration.test_builder_environments import Env, git, start_builder_hub
from tests.support.hub_process import free_port, write_site_config

pytestmark = pytest.mark.integration

SECRET = "the unpublished beam analysis of ada"
POST_BUILD = f"""#!/bin/bash
set -e
site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo 'SECRET = "{SECRET}"' > "$site/ada_private.py"
"""
ATTACK = """
import os
for attempt in (lambda: os.listdir({venv!r}), lambda: open({module!r}).read(),
                lambda: open({config!r}).read()):
    try:
        attempt()
        print('READ')
    except OSError as error:
        print(type(error).__name__)
"""


@pytest.fixture(scope="module")
def site():
    assert os.geteuid() == 0, "these tests need root: servers run as accounts of their own"
    folder = open_folder("private")
    repo = folder / "private-repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "requirements.txt").write_text("# nothing beyond the server\n")
    (repo / "postBuild").write_text(POST_BUILD)
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "Ada's private analysis")
    (folder / "data").mkdir()
    config = write_site_config(
        folder,
        builder={"enabled": True, "port": free_port(), "allow_local_paths": True},
        groups={"physics": ["ada", "bob"]},
    )
    hub = start_builder_hub(config, folder / "hub.log")
    yield {"hub": hub, "repo": repo, "folder": folder}
    hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def run_in(user: Env, environment: str, code: str) -> list[str]:
    """The lines ``code`` prints in a kernel of ``user``'s server launched from ``environment``."""
    user.user.spawn({"environment": environment})
    try:
        result = user.user.execute(code, timeout=120)
    finally:
        user.user.stop_server()
    assert result["error"] is None, result
    return result["stdout"].split("\n")[:-1]


def test_only_those_who_may_launch_a_private_environment_read_it(site):
    ada, bob = Env(site["hub"].url, "ada"), Env(site["hub"].url, "bob")
    reply = ada.call(
        "POST", "/environments", json={"name": "secret", "repository": str(site["repo"])}
    )
    assert reply.status_code == 201, reply.text
    events = ada.follow(reply.json()["id"])
    assert events[-1]["status"] == "ready", events[-3:]
    environment = ada.call("GET", f"/environments/{reply.json()['id']}").json()
    venv = Path(environment["artifact"]["venv_path"])
    top = os.lstat(venv)
    assert top.st_uid == 0 and oct(top.st_mode & 0o777) == oct(0o750)
    assert top.st_gid in environment_gids(BuilderSettings())
    module = next(venv.glob("lib/python*/site-packages/ada_private.py"))

    attack = ATTACK.format(venv=str(venv), module=str(module), config=str(venv / "pyvenv.cfg"))
    assert run_in(bob, "default", attack) == ["PermissionError"] * 3
    denied = subprocess.run(
        ["runuser", "-u", "kh-bob", "--", "cat", str(module)], capture_output=True, text=True
    )
    assert denied.returncode != 0 and "Permission denied" in denied.stderr

    assert run_in(ada, "ada.secret", "import ada_private; print(ada_private.SECRET)") == [SECRET]
    assert 'value="ada.secret"' not in bob.user.http.get(f"{site['hub'].url}/hub/spawn").text

    shared = ada.call(
        "PUT",
        f"/environments/{environment['id']}/visibility",
        json={"visibility": "group:physics"},
    )
    assert shared.json()["visibility"] == "group:physics", shared.text
    code = "import ada_private, os, sys; print(ada_private.SECRET); print(os.listdir(sys.prefix))"
    assert run_in(bob, "ada.secret", code)[0] == SECRET
    assert run_in(bob, "default", attack) == ["PermissionError"] * 3, "only when launched from it"
