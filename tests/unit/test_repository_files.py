"""Repository files of a built environment: the folder they go into, where the server opens,
and root's part in keeping them (checks, seal, move), which never follows the build's links."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.builder_base import Artifact, BuildFailed, BuildRequest
from kioskhub.image_builder.catalog import EnvironmentRecord
from kioskhub.image_builder.repository_files import (
    FILES_FOLDER,
    SOURCE_CONFIG,
    _make_holder,
    _move_into_venv,
    _seal_kept,
    folder_name,
    image_files_holder,
    keep_repository_files,
    kept_source,
)
from kioskhub.image_builder.source_safety import RepositorySource
from kioskhub.image_builder.spawn_catalog import _as_choice, _resolve_site
from kioskhub.spawner.launch_spec import RepositoryFiles, build_launch_spec
from tests.conftest import open_folder

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        ("https://gitlab.example.org/beams/analysis.git", "analysis"),
        ("https://github.com/ada/Beam Study/", "Beam-Study"),
        ("git@gitlab.example.org:beams/fit-2024.git", "fit-2024"),
        ("/srv/repositories/.hidden", "hidden"),
        ("/srv/repositories/..", "repository"),
        ("", "repository"),
    ],
)
def test_the_folder_is_the_repositorys_name_in_letters_a_folder_may_hold(url, folder):
    assert folder_name(url) == folder
    Environment(name="x", files_folder=folder)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"files_folder": ".."}, "files_folder"),
        ({"files_folder": "a/b"}, "files_folder"),
        ({"default_url": "lab/tree"}, "default_url"),
        ({"files_source": "/srv/kept.git"}, "'files_source' and 'files_commit' go together"),
        (
            {
                "kind": "repository",
                "repository": "x",
                "files_source": "/k.git",
                "files_commit": SHA,
            },
            "'files_source' is only for kinds venv and image",
        ),
    ],
)
def test_environment_files_fields_refuse_what_cannot_work(fields, message):
    with pytest.raises(ValidationError, match=message):
        Environment(name="x", **fields)


def site_with(tmp_path: Path, **environment) -> Site:
    return Site.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "home": {"root": str(tmp_path / "homes")},
            "environments": [{"name": "built", "default": True, **environment}],
            "profiles": [{"name": "small", "cpu": 1, "memory": "1Gi"}],
            "spawner": {"default_url": "/lab"},
        }
    )


def test_the_server_opens_in_the_files_folder_unless_the_environment_says_where(tmp_path):
    kept = {"files_source": str(tmp_path / f"{SHA}.git"), "files_commit": SHA}

    plain = build_launch_spec(site_with(tmp_path), "ada")
    named = build_launch_spec(site_with(tmp_path, **kept, files_folder="beams"), "ada")
    unnamed = build_launch_spec(site_with(tmp_path, **kept), "ada")
    told = build_launch_spec(
        site_with(tmp_path, **kept, default_url="/lab/tree/beams/a.ipynb"), "ada"
    )

    assert (plain.repository_files, plain.default_url) == (None, "/lab")
    assert named.repository_files == RepositoryFiles(tmp_path / f"{SHA}.git", SHA, "beams")
    assert named.default_url == "/lab/tree/beams"
    assert (unnamed.repository_files.folder, unnamed.default_url) == (SHA, f"/lab/tree/{SHA}")
    assert told.default_url == "/lab/tree/beams/a.ipynb"


def record(venv: Path) -> EnvironmentRecord:
    return EnvironmentRecord(
        owner="ada",
        name="beams",
        repo_url="https://gitlab.example.org/beams/Beam-Study.git",
        commit_sha=SHA,
        venv_path=str(venv),
    )


def test_the_catalog_offers_the_kept_files_with_their_folder(tmp_path):
    venv = tmp_path / "venv"
    without = _as_choice(record(venv), tmp_path)
    kept_source(venv, SHA).mkdir(parents=True)
    offered = _as_choice(record(venv), tmp_path)
    configured = Environment(
        name="beams",
        kind="repository",
        repository="https://gitlab.example.org/beams/Beam-Study.git",
        files_folder="study",
        default_url="/lab/tree/study/README.md",
    )
    site = _resolve_site(configured, record(venv), tmp_path)

    assert without.files_source is None
    assert (offered.files_source, offered.files_commit) == (kept_source(venv, SHA), SHA)
    assert offered.files_folder == "Beam-Study"
    assert (site.files_folder, site.default_url) == ("study", "/lab/tree/study/README.md")
    assert site.files_source == kept_source(venv, SHA)


def image_record(name: str = "beams", owner: str = "ada") -> EnvironmentRecord:
    return EnvironmentRecord(
        owner=owner,
        name=name,
        builder="container",
        repo_url="https://gitlab.example.org/beams/Beam-Study.git",
        commit_sha=SHA,
        image_ref="127.0.0.1:5000/kioskhub-env-ada-beams@sha256:" + "a" * 64,
        content_hash="k1",
    )


def test_the_catalog_offers_an_images_kept_files_from_its_owners_holder(tmp_path):
    without = _as_choice(image_record(), tmp_path)
    kept_source(image_files_holder(tmp_path, "ada", "beams"), SHA).mkdir(parents=True)
    offered = _as_choice(image_record(), tmp_path)
    other_owner = _as_choice(image_record(owner="bob"), tmp_path)
    other_image = _as_choice(image_record("fits"), tmp_path)
    spec = build_launch_spec(
        site_with(
            tmp_path,
            kind="image",
            image=offered.image,
            files_source=str(offered.files_source),
            files_commit=SHA,
            files_folder=offered.files_folder,
        ),
        "ada",
    )

    assert without.files_source is None
    assert offered.kind == "image"
    assert offered.files_source == kept_source(image_files_holder(tmp_path, "ada", "beams"), SHA)
    assert (offered.files_commit, offered.files_folder) == (SHA, "Beam-Study")
    assert other_owner.files_source is None and other_image.files_source is None
    assert spec.repository_files.folder == "Beam-Study"
    assert spec.default_url == "/lab/tree/Beam-Study"


@pytest.fixture
def folder():
    if os.geteuid() != 0:
        pytest.fail("sealing as root needs root; run the tests as root")
    folder = open_folder("kept")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def staging_in(folder: Path) -> Path:
    staging = folder / ".staging"
    subprocess.run(["git", "init", "--quiet", "--bare", str(staging)], check=True)
    (staging / "hooks" / "post-checkout").write_text("#!/bin/sh\necho hooked\n")
    os.chown(staging / "config", 4242, 4242)
    return staging


def test_root_gives_the_kept_repository_a_config_of_its_own_and_no_hooks(folder):
    staging = staging_in(folder)
    (staging / "config").write_text("[core]\n\tfsmonitor = /tmp/evil\n")

    _seal_kept(staging)

    assert (staging / "config").read_bytes() == SOURCE_CONFIG
    assert (staging / "config").stat().st_uid == 0
    assert not (staging / "hooks").exists()


@pytest.mark.parametrize("kind", ["fifo", "link", "hard link"])
def test_root_refuses_what_no_git_fetch_makes(folder, kind):
    staging = staging_in(folder)
    strange = staging / "objects" / "strange"
    if kind == "fifo":
        os.mkfifo(strange)
    elif kind == "link":
        strange.symlink_to("/etc/shadow")
    else:
        os.link(staging / "HEAD", strange)

    with pytest.raises(BuildFailed, match="in the copy of the repository, which is not a plain"):
        _seal_kept(staging)


def test_a_link_the_build_left_at_the_folders_name_is_never_followed(folder):
    """The attack: postBuild makes $VIRTUAL_ENV/kioskhub-repository → a root folder."""
    victim = folder / "victim"
    victim.mkdir()
    venv = folder / "venv"
    venv.mkdir()
    (venv / FILES_FOLDER).symlink_to(victim)
    staging = staging_in(folder)
    _seal_kept(staging)

    with pytest.raises(OSError):
        _move_into_venv(staging, venv, f"{SHA}.git")
    fresh = Artifact(SHA, venv_path=str(venv))
    request = BuildRequest(1, "ada", "beams", RepositorySource("/r", "/r", "file"))
    with pytest.raises(BuildFailed, match="the build made kioskhub-repository in the environment"):
        asyncio.run(
            keep_repository_files(
                fresh, request, work=folder, environments_dir=folder, log=None, account=None
            )
        )

    assert os.listdir(victim) == []


def test_an_images_holder_is_roots_and_closed_to_its_group(folder):
    holder = image_files_holder(folder, "ada", "k1")
    _make_holder(holder, 4243)
    _make_holder(holder, 4244)  # an existing holder keeps its group
    site_holder = image_files_holder(folder, "kioskhub", "k1")
    _make_holder(site_holder, None)

    status, site_status = os.lstat(holder), os.lstat(site_holder)
    assert (status.st_uid, status.st_gid, oct(status.st_mode & 0o7777)) == (0, 4243, "0o750")
    assert (site_status.st_uid, oct(site_status.st_mode & 0o7777)) == (0, "0o755")
    assert holder != site_holder and holder.parent == folder


def test_a_holder_someone_else_made_is_refused(folder):
    """The attack: an account that may write the environments folder plants the holder."""
    holder = image_files_holder(folder, "ada", "k1")
    holder.mkdir()
    os.chown(holder, 4242, 4242)
    link = image_files_holder(folder, "ada", "k2")
    link.symlink_to(folder)

    for planted in (holder, link):
        with pytest.raises(BuildFailed, match="is not the builder's own folder"):
            _make_holder(planted, 4243)
    assert os.lstat(holder).st_uid == 4242
