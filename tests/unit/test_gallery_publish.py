"""Publishing from JupyterLab, its pure parts: hostile paths refused before anything is
read, links leading out of the server's folder refused, the claims and the body sent to
the gallery; the git claim from a real repository; what servers are told and may reach."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from kioskhub.extensions.gallery_publish import git_claim
from kioskhub.extensions.gallery_publish_body import (
    PublishError,
    PublishRequest,
    checked_path,
    data_read_claims,
    entry_page,
    gallery_body,
    gallery_error,
    gallery_post_url,
    git_commit_claim,
    publish_request,
    python_version,
    resolved_inside,
)
from kioskhub.extensions.gallery_publish_lab import REMOTE_ENTRY
from kioskhub.hub.dask_gateway import SERVER_SCOPES
from kioskhub.hub.gallery.hub_service import ACCESS_SCOPE
from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.state_dir import Passwords
from kioskhub.spawner.launch_spec import build_launch_spec
from kioskhub.spawner.podman_plan import pod_reachable_env
from tests.unit.test_hub_settings import small_site

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.ipynb", "has an empty, '.' or '..' part"),
        ("work/../../etc/passwd", "has an empty, '.' or '..' part"),
        ("work//x.csv", "has an empty, '.' or '..' part"),
        ("./x.csv", "has an empty, '.' or '..' part"),
        ("/etc/passwd", "must be relative to your server's folder"),
        (".ssh/id_rsa", "is hidden (a part starts with '.')"),
        ("repo/.git/config", "is hidden (a part starts with '.')"),
        ("a\\..\\b", "has a control character or backslash"),
        ("a\x00b", "has a control character or backslash"),
        ("line\nbreak", "has a control character or backslash"),
        ("x" * 2000, "is too long"),
        ("", "Name the file"),
        (None, "Name the file"),
    ],
)
def test_hostile_paths_are_refused_before_anything_is_read(path, message):
    with pytest.raises(PublishError) as refused:
        checked_path(path, "file")
    assert message in str(refused.value)
    assert refused.value.status == 400


def test_plain_paths_pass():
    assert checked_path("analysis/fit.ipynb", "notebook") == "analysis/fit.ipynb"
    assert checked_path("data/points v2.csv", "file") == "data/points v2.csv"


@pytest.fixture
def server_folder(tmp_path):
    """A server's folder with a notebook, a file, and links: one inside, two leading out
    (to a stand-in for another user's secret, never a real system path)."""
    root = tmp_path / "root"
    (root / "work").mkdir(parents=True)
    (root / "work" / "fit.ipynb").write_text("{}")
    (root / "work" / "points.csv").write_text("x,y\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (root / "work" / "inside-link.csv").symlink_to(root / "work" / "points.csv")
    (root / "work" / "secret.txt").symlink_to(outside / "secret.txt")
    (root / "work" / "elsewhere").symlink_to(outside, target_is_directory=True)
    return root


def test_links_leading_out_of_the_server_folder_are_refused(server_folder):
    root = server_folder
    assert resolved_inside(root, "work/fit.ipynb", "notebook") == root / "work" / "fit.ipynb"
    assert resolved_inside(root, "work/inside-link.csv", "file") == root / "work" / "points.csv"
    for path in ("work/secret.txt", "work/elsewhere/secret.txt"):
        with pytest.raises(PublishError) as refused:
            resolved_inside(root, path, "file")
        assert refused.value.status == 403
        assert str(refused.value) == (
            f"The file {path!r} leads outside your server's folder (through a link); "
            "copy the file into the folder to publish it."
        )
    with pytest.raises(PublishError, match="is not a file in your server's folder"):
        resolved_inside(root, "work", "file")
    with pytest.raises(PublishError, match="is not a file in your server's folder"):
        resolved_inside(root, "work/missing.csv", "file")


def test_the_request_from_jupyterlab_is_checked():
    request = publish_request(
        {
            "path": "work/fit.ipynb",
            "files": ["points.csv", "data/raw.csv", "points.csv"],
            "title": "  A fit  ",
            "abstract": "Fits.",
            "tags": "physics, beam  time",
            "visibility": "group:physics",
            "entry": "7",
        }
    )
    assert request == PublishRequest(
        notebook="work/fit.ipynb",
        files=("points.csv", "data/raw.csv"),
        title="A fit",
        abstract="Fits.",
        tags=("physics", "beam", "time"),
        visibility="group:physics",
        entry=7,
    )
    assert request.file_path("data/raw.csv") == "work/data/raw.csv"
    assert publish_request({"path": "top.ipynb", "title": "T"}).file_path("a.csv") == "a.csv"
    for body, message in [
        ([], "Send a JSON object"),
        ({"path": "notes.txt", "title": "T"}, "is not a notebook (.ipynb)"),
        ({"path": "a.ipynb", "title": " "}, "Give the notebook a title."),
        ({"path": "a.ipynb", "title": "T", "files": ["../x"]}, "has an empty, '.' or '..'"),
        ({"path": "a.ipynb", "title": "T", "files": "x.csv"}, "'files' must be a list"),
        ({"path": "a.ipynb", "title": "T", "visibility": "world"}, "'visibility' must be"),
        ({"path": "a.ipynb", "title": "T", "entry": "1; rm"}, "'entry' must be the number"),
        ({"path": "a.ipynb", "title": "T", "entry": True}, "'entry' must be the number"),
    ]:
        with pytest.raises(PublishError, match=message.replace("(", r"\(").replace(")", r"\)")):
            publish_request(body)


def test_the_claims_are_assembled_from_git_the_kernel_and_the_data_reads():
    assert git_commit_claim(COMMIT + "\n", dirty=False) == (COMMIT, [])
    commit, notes = git_commit_claim(COMMIT.upper() + "\n", dirty=True)
    assert commit == COMMIT
    assert notes == [
        "The notebook has changes not committed to git: the commit 0123456789ab recorded "
        "is the one its folder is at, not exactly what you publish."
    ]
    assert git_commit_claim(None, dirty=False) == (None, [])
    assert git_commit_claim("fatal: not a git repository", dirty=False) == (None, [])

    info = {"language_info": {"name": "python", "version": "3.12.4"}, "status": "ok"}
    assert python_version(info) == "3.12.4"
    assert python_version({"language_info": {"name": "R", "version": "4.4"}}) is None
    assert python_version(None) is None

    answer = {
        "files": [
            {"path": "/data/a.csv", "mount": "data", "relative_path": "a.csv", "size": 8,
             "mtime": 1700000000, "sha256": "e" * 64},
            {"path": "/data/b.h5", "mount": "data", "relative_path": "b.h5", "size": 9,
             "mtime": "2023-11-14T22:13:20.500000+00:00", "sha256": None,
             "checksum_skipped": "changed since it was read"},
        ]
    }  # fmt: skip
    assert data_read_claims(answer) == [
        {"path": "/data/a.csv", "size": 8, "mtime": 1700000000.0, "sha256": "e" * 64},
        {"path": "/data/b.h5", "size": 9, "mtime": 1700000000.5, "sha256": None},
    ]


def test_the_body_sent_to_the_gallery():
    request = PublishRequest(notebook="w/fit.ipynb", files=("a.csv",), title="Fit", tags=("x",))
    claims = {"git_commit": None, "kernel": "python3", "python": "3.12.4", "data_reads": []}
    notebook = {"cells": [], "nbformat": 4}
    assert gallery_body(request, notebook, {"a.csv": "eA=="}, claims, "gpu") == {
        "title": "Fit",
        "abstract": "",
        "tags": ["x"],
        "notebook": notebook,
        "files": {"a.csv": "eA=="},
        "claims": claims,
        "server": "gpu",
        "visibility": "draft",
    }
    version = PublishRequest(notebook="w/fit.ipynb", title="Fit", entry=3)
    assert "visibility" not in gallery_body(version, notebook, {}, claims)
    gallery = "http://127.0.0.1:8092/services/gallery/"
    assert gallery_post_url(gallery, None) == f"{gallery}api/entries"
    assert gallery_post_url(gallery, 3) == f"{gallery}api/entries/3/versions"
    assert entry_page("/", 3, 2) == "/services/gallery/entries/3/v2"
    assert entry_page("/lab-hub/", 3, 1) == "/lab-hub/services/gallery/entries/3/v1"


def test_the_gallerys_refusal_is_shown_as_it_said():
    refused = gallery_error(409, {"status": 409, "message": "publish from a running server"})
    assert str(refused) == "The gallery refused to publish: publish from a running server"
    assert refused.status == 409
    assert gallery_error(500, None).status == 502
    assert "not turned on at this site" in str(gallery_error(404, None))


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_the_git_claim_from_a_real_repository(tmp_path):
    notebook = tmp_path / "repo" / "fit.ipynb"
    notebook.parent.mkdir()
    notebook.write_text("{}")
    assert asyncio.run(git_claim(notebook)) == (None, [])  # not in a repository

    git(notebook.parent, "init", "-q")
    git(notebook.parent, "add", "fit.ipynb")
    git(notebook.parent, "-c", "user.name=A", "-c", "user.email=a@b", "commit", "-qm", "fit")
    head = subprocess.run(
        ["git", "-C", str(notebook.parent), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (notebook.parent / "other.txt").write_text("unrelated change")
    assert asyncio.run(git_claim(notebook)) == (head, [])
    notebook.write_text('{"changed": 1}')
    commit, notes = asyncio.run(git_claim(notebook))
    assert commit == head and "changes not committed to git" in notes[0]


def test_servers_are_told_the_gallery_and_their_token_may_reach_it(tmp_path):
    passwords = Passwords(user="correct-horse", admin="a" * 32, auth_state_key="f" * 64)
    off = small_site(tmp_path)
    assert "KIOSKHUB_GALLERY_URL" not in build_launch_spec(off, "ada").env
    off_scopes = jupyterhub_settings(off, passwords, "/chp")["KioskSpawner"]
    assert ACCESS_SCOPE not in off_scopes.get("server_token_scopes", [])

    site = small_site(tmp_path, gallery={"enabled": True, "port": 8123})
    env = build_launch_spec(site, "ada").env
    assert env["KIOSKHUB_GALLERY_URL"] == "http://127.0.0.1:8123/services/gallery/"
    assert env["KIOSKHUB_GALLERY_MAX_BYTES"] == str(site.gallery.max_version_bytes)
    assert pod_reachable_env(env)["KIOSKHUB_GALLERY_URL"] == (
        "http://10.0.2.2:8123/services/gallery/"
    )
    scopes = jupyterhub_settings(site, passwords, "/chp")["KioskSpawner"]["server_token_scopes"]
    assert scopes == [*SERVER_SCOPES, ACCESS_SCOPE]

    both = small_site(tmp_path, gallery={"enabled": True}, dask={"enabled": True})
    scopes = jupyterhub_settings(both, passwords, "/chp")["KioskSpawner"]["server_token_scopes"]
    assert sorted(scopes) == sorted(
        [*SERVER_SCOPES, "access:services!service=dask-gateway", ACCESS_SCOPE]
    )


def test_the_lab_plugin_is_valid_javascript_with_no_html_insertion(tmp_path):
    script = tmp_path / "remoteEntry.js"
    script.write_text(REMOTE_ENTRY)
    checked = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "innerHTML" not in REMOTE_ENTRY and "insertAdjacentHTML" not in REMOTE_ENTRY
