"""Journey J2 on the podman backend: a user's repository → an image → a pod with its notebooks.

One hub with the builder service (container builder, pushing to the loopback registry) and
spawner.backend podman, as root. Ada registers a repository in the shapes Binder users write
(a ``setup.py`` package, ``requirements.txt``, ``apt.txt`` with jq, a notebook that imports
the package) through the builder's REST API; the image is built on the site base image and
pushed by digest. She starts that environment: the pod runs the image by digest, her home
folder (bound into the pod) has the notebook in ~/beam-study, the server opens there, and
the notebook, executed by a kernel of that server, prints what the package computes.
The kept repository on the host is root's and closed to the environment's own group, which
the pods' account lacks; Bob cannot start Ada's environment. A rebuild with a second notebook
merges into her copy and keeps her own file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_builder_environments import SERVICE, Env, git
from tests.support.hub_process import free_port, write_site_config
from tests.support.podman import build_base_image, podman_hub
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration

SETUP_PY = """from setuptools import setup
setup(name="beam-tools", version="0.1", packages=["beam_tools"])
"""
PACKAGE = '''import statistics


def summary(shots):
    """What the notebook prints: the mean of the shots."""
    return f"beam_tools: mean {statistics.mean(shots):.1f} over {len(shots)} shots"
'''
NOTEBOOK_CELLS = [
    "from beam_tools import summary\nprint(summary([1, 2, 3]))",
    "import subprocess, tomli_w\n"
    "print(tomli_w.dumps({'shots': 3}).strip())\n"
    "print('jq says', subprocess.run(['jq', '-n', '40 + 2'], capture_output=True, "
    "text=True).stdout.strip())",
]
EXECUTE_NOTEBOOK = """
import nbformat
from nbclient import NotebookClient
notebook = nbformat.read('beam-study/analysis.ipynb', as_version=4)
NotebookClient(notebook, kernel_name='python3', timeout=120,
               resources={'metadata': {'path': 'beam-study'}}).execute()
for cell in notebook.cells:
    for output in cell.get('outputs', []):
        print(output.get('text', output.get('evalue', '')), end='')
"""


def notebook() -> str:
    cells = [
        {
            "cell_type": "code",
            "metadata": {},
            "source": text,
            "outputs": [],
            "execution_count": None,
        }
        for text in NOTEBOOK_CELLS
    ]
    document = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(document, indent=1) + "\n"


def make_repository(folder: Path) -> Path:
    repo = folder / "beam-study"
    (repo / "beam_tools").mkdir(parents=True)
    files = {
        "setup.py": SETUP_PY,
        "beam_tools/__init__.py": PACKAGE,
        "requirements.txt": "tomli-w\n",
        "apt.txt": "# a program for the notebooks\njq\n",
        "analysis.ipynb": notebook(),
    }
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "init", "--quiet")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "Beam study")
    return repo


def read_as_pods_account(kept: Path, groups: tuple[int, ...]) -> str:
    """The kept repository's HEAD as read by the pods' account (1000:100) with ``groups``."""
    done = subprocess.run(
        [sys.executable, "-c", f"print(open({str(kept / 'HEAD')!r}).read().strip())"],
        capture_output=True,
        text=True,
        user=1000,
        group=100,
        extra_groups=list(groups),
        timeout=30,
    )
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1].split(":")[0]


@pytest.fixture(scope="module")
def site(loopback_registry):
    assert os.geteuid() == 0, "these tests need root: builds and pods run as accounts of their own"
    build_base_image()
    folder = open_folder("podman-j2")
    (folder / "data").mkdir()
    config = write_site_config(
        folder,
        spawner={"backend": "podman", "start_timeout": 300, "default_url": "/lab"},
        builder={
            "enabled": True,
            "port": free_port(),
            "allow_local_paths": True,
            "default_builder": "container",
            "registry": f"{loopback_registry.host}/kioskhub",
            "registry_insecure": True,
            "build_timeout": 1200,
        },
        environments=[{"name": "default", "display_name": "Python 3", "default": True}],
        profiles=[{"name": "small", "cpu": 1, "memory": "1Gi", "default": True}],
        data_mounts=[],
    )
    with podman_hub(config, folder) as hub:
        yield {"hub": hub, "folder": folder}


@pytest.mark.timeout(1800)
def test_a_registered_repository_runs_in_a_pod_with_its_notebook_executed(site, loopback_registry):
    ada = Env(site["hub"].url, "ada")
    assert ada.base.startswith(site["hub"].url + SERVICE)
    repo = make_repository(site["folder"])

    registered = ada.call("POST", "/environments", json={"name": "beams", "repository": str(repo)})
    assert registered.status_code == 201, registered.text
    environment_id = registered.json()["id"]
    events = ada.follow(environment_id, timeout=1200)
    assert events[-1]["status"] == "ready", events[-5:]
    environment = ada.call("GET", f"/environments/{environment_id}").json()
    image = environment["artifact"]["image_ref"]
    commit = environment["source"]["commit_sha"]
    assert image.startswith(f"{loopback_registry.host}/kioskhub/"), environment
    assert "@sha256:" in image, environment

    kept = [
        path / "kioskhub-repository" / f"{commit}.git"
        for path in (site["folder"] / "state" / "environments").glob("files-*")
    ]
    assert len(kept) == 1 and kept[0].is_dir(), kept
    holder = os.lstat(kept[0].parent.parent)
    assert (holder.st_uid, stat.S_IMODE(holder.st_mode)) == (0, 0o750), "closed to its group"
    # Every pod runs as the pods' account: without the group, it reads nothing of them.
    assert read_as_pods_account(kept[0], ()) == "PermissionError"
    assert read_as_pods_account(kept[0], (holder.st_gid,)) == "ref: refs/heads/built"

    events = ada.user.spawn({"environment": "ada.beams"}, timeout=600)
    assert events[-1].get("ready"), events[-5:]
    home = site["folder"] / "homes" / "ada"
    copy = home / "beam-study"
    assert json.loads((copy / "analysis.ipynb").read_text()) == json.loads(notebook())
    assert copy.stat().st_uid == (copy / "analysis.ipynb").stat().st_uid == home.stat().st_uid
    opening = ada.user.server("/", allow_redirects=False)
    assert urlsplit(opening.headers["Location"]).path == "/user/ada/lab/tree/beam-study"
    listing = ada.user.server("/api/contents/beam-study").json()
    assert "analysis.ipynb" in [item["name"] for item in listing["content"]]

    result = ada.user.execute(
        "import os; print(os.environ['KIOSKHUB_ENVIRONMENT'])\n"
        + EXECUTE_NOTEBOOK
        + "\nopen('beam-study/notes.md', 'w').write('ada was here')",
        timeout=300,
    )
    ada.user.stop_server()

    assert result["error"] is None, result
    assert result["stdout"].splitlines() == [
        "ada.beams",
        "beam_tools: mean 2.0 over 3 shots",
        "shots = 3",
        "jq says 42",
    ], result
    bob = signed_in(site["hub"].url, "bob", SHARED_PASSWORD)
    refused = bob.api("/users/bob/server", "POST", json={"environment": "ada.beams"})
    assert refused.status_code == 400, refused.text
    assert "Unknown environment 'ada.beams'" in refused.json()["message"]

    (repo / "fit.ipynb").write_text(notebook())
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "A second notebook")
    rebuilt = ada.call("POST", f"/environments/{environment_id}/rebuild", json={})
    assert rebuilt.status_code == 202, rebuilt.text
    assert ada.follow(environment_id, timeout=1200)[-1]["status"] == "ready"
    newer = ada.call("GET", f"/environments/{environment_id}").json()["source"]["commit_sha"]
    assert sorted(path.name for path in kept[0].parent.iterdir()) == sorted(
        [f"{commit}.git", f"{newer}.git"]
    )
    events = ada.user.spawn({"environment": "ada.beams"}, timeout=600)
    assert events[-1].get("ready"), events[-5:]
    ada.user.stop_server()

    assert (copy / "notes.md").read_text() == "ada was here"
    assert json.loads((copy / "fit.ipynb").read_text()) == json.loads(notebook())
    assert os.lstat(kept[0].parent.parent).st_gid == holder.st_gid
    shutil.rmtree(repo, ignore_errors=True)
