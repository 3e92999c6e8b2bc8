"""Publishing from JupyterLab on a real hub: a user's server publishes its notebook to the
gallery with the user's token, recording the notebook's git commit (a repository made in
the user's server), the kernel and Python version of its running kernel and the data that
kernel read under the data mount; a second version follows; paths outside the server's
folder and links leading out are refused with a message; another user's token is refused."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from tests.conftest import SHARED_PASSWORD
from tests.support.gallery_hub import gallery_hub
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

ENDPOINT = "/kioskhub/gallery/publish"
NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "id": "c0", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "open(os.environ['KIOSKHUB_DATA_DIR'] + '/beamline-sample.csv').read()"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip
# Run in the notebook's kernel, as the user, in the notebook's folder: read from the data
# mount, commit the notebook to a new repository, and link a file kept outside the server's
# folder (a stand-in under a fresh temporary folder).
KERNEL_CODE = """\
import json, os, platform, subprocess, tempfile
open(os.path.join(os.environ['KIOSKHUB_DATA_DIR'], 'beamline-sample.csv')).read()
git = ['git', '-c', 'user.name=Ada', '-c', 'user.email=ada@lab.example']
subprocess.run(git + ['init', '-q'], check=True)
subprocess.run(git + ['add', 'fit.ipynb', 'points.csv'], check=True)
subprocess.run(git + ['commit', '-qm', 'fit'], check=True)
head = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout
outside = os.path.join(tempfile.mkdtemp(), 'secret.txt')
open(outside, 'w').write('kept outside')
os.symlink(outside, 'leak.txt')
print(json.dumps({'head': head.strip(), 'python': platform.python_version()}))
"""


@pytest.fixture(scope="module")
def site():
    with gallery_hub("gallery-lab") as (hub, folder):
        yield {"hub": hub, "folder": folder, "ada": signed_in(hub.url, "ada", SHARED_PASSWORD)}


def server_logs(folder) -> str:
    """The tail of every server's log under the site's state folder."""
    logs = sorted((folder / "state" / "logs").glob("*.log"))
    return "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)


def publish(user: UserSession, **body) -> requests.Response:
    return user.server(ENDPOINT, "POST", json=body)


def gallery(user: UserSession, path: str) -> requests.Response:
    return requests.get(
        f"{user.hub_url}/services/gallery/api{path}",
        headers={"Authorization": f"token {user.token}"},
        timeout=60,
    )


def test_a_notebook_is_published_from_its_server(site):
    hub, ada, folder = site["hub"], site["ada"], site["folder"]
    assert ada.spawn()[-1].get("ready"), hub.log_text()[-3000:]
    for path, model in [
        ("study", {"type": "directory"}),
        ("study/fit.ipynb", {"type": "notebook", "content": NOTEBOOK}),
        ("study/points.csv", {"type": "file", "format": "text", "content": "x,y\n1,2\n"}),
        ("lonely.ipynb", {"type": "notebook", "content": NOTEBOOK}),
    ]:
        made = ada.server(f"/api/contents/{path}", "PUT", json=model)
        assert made.status_code in (200, 201), made.text
    session = ada.server(
        "/api/sessions",
        "POST",
        json={"path": "study/fit.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
    ).json()
    ran = ada._execute_in(session["kernel"]["id"], KERNEL_CODE, timeout=90)
    assert ran["error"] is None, ran
    kernel = json.loads(ran["stdout"].strip().splitlines()[-1])

    reply = publish(
        ada,
        path="study/fit.ipynb",
        files=["points.csv"],
        title="A fit of the beamline sample",
        abstract="Fits.",
        tags=["physics"],
        visibility="draft",
    )

    assert reply.status_code == 200, f"{reply.text}\n{server_logs(folder)}"
    answer = reply.json()
    entry_id = answer["entry"]
    assert answer["version"] == 1 and answer["notes"] == []
    assert answer["url"] == f"/services/gallery/entries/{entry_id}/v1"
    entry = gallery(ada, f"/entries/{entry_id}").json()
    assert entry["title"] == "A fit of the beamline sample" and entry["author"] == "ada"
    assert entry["tags"] == ["physics"] and entry["visibility"] == "draft"
    version = gallery(ada, f"/entries/{entry_id}/versions/1").json()
    assert [f["name"] for f in version["manifest"]["files"]] == ["points.csv"]
    points = gallery(ada, f"/entries/{entry_id}/versions/1/files/points.csv")
    assert points.content == b"x,y\n1,2\n"
    claims = version["claims"]
    assert claims["git_commit"] == kernel["head"]
    assert claims["kernel"] == "python3" and claims["python"] == kernel["python"]
    sample = folder / "data" / "beamline-sample.csv"
    [read] = claims["data_reads"]
    assert read["path"].endswith("/beamline-sample.csv")
    assert read["size"] == sample.stat().st_size
    assert read["sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()
    assert version["pinning"]["environment"] == "default"  # from the hub, not the server
    notebook = gallery(ada, f"/entries/{entry_id}/versions/1/notebook").json()
    assert notebook["cells"][0]["source"] == NOTEBOOK["cells"][0]["source"]

    # A second version of the same entry, the notebook now differing from its commit.
    changed = {**NOTEBOOK, "cells": [{**NOTEBOOK["cells"][0], "source": "1 + 1"}]}
    saved = {"type": "notebook", "content": changed}
    assert ada.server("/api/contents/study/fit.ipynb", "PUT", json=saved).status_code == 200
    again = publish(ada, path="study/fit.ipynb", title="A fit, again", entry=entry_id)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 2
    assert "changes not committed to git" in again.json()["notes"][0]
    assert gallery(ada, f"/entries/{entry_id}").json()["latest"] == 2

    # Refused, saying why: outside the server's folder, hidden, a link out, no kernel.
    for body, status, message in [
        ({"path": "../../etc/passwd.ipynb"}, 400, "has an empty, '.' or '..' part"),
        ({"path": "/etc/x.ipynb"}, 400, "must be relative to your server's folder"),
        ({"path": "study/fit.ipynb", "files": [".ssh/id_rsa"]}, 400, "is hidden"),
        (
            {"path": "study/fit.ipynb", "files": ["leak.txt"]},
            403,
            "The file 'study/leak.txt' leads outside your server's folder (through a link); "
            "copy the file into the folder to publish it.",
        ),
        ({"path": "lonely.ipynb"}, 404, "The notebook lonely.ipynb has no running kernel"),
    ]:
        refused = publish(ada, title="Refused", **body)
        assert refused.status_code == status, refused.text
        assert message in refused.json()["message"]
    assert gallery(ada, "/entries").json()["total"] == 1

    # Another user's token does not publish from ada's server.
    grace = signed_in(hub.url, "grace", SHARED_PASSWORD)
    grace.username = "ada"  # grace asks ada's server with her own token
    taken = publish(grace, path="study/fit.ipynb", title="Mine now")
    assert taken.status_code == 403, taken.text
