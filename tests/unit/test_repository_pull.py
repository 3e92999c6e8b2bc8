"""An environment's repository files in the home: cloned, merged, never overwriting the user's.

The child that pulls really runs as another account (nobody), from a bare repository owned
by root and closed to all but one group, as the image builder leaves it in a private venv;
so these tests need root, as the hub has. The folders are below /tmp so nobody may enter.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kioskhub.spawner.home import HomeError, prepare_home
from kioskhub.spawner.launch_spec import EnvironmentSpec, LaunchSpec, RepositoryFiles
from tests.conftest import open_folder
from tests.integration.test_builder_environments import git

NOBODY = (65534, 65534)
VENV_GROUP = 64123
"""The private environment's group: nobody is not in it unless the spawner gives it."""


@pytest.fixture
def folder():
    if os.geteuid() != 0:
        pytest.fail("pulling as another account needs root; run the tests as root")
    folder = open_folder("pull")
    (folder / "homes").mkdir(mode=0o755)
    work = folder / "analysis"
    work.mkdir()
    git(work, "init", "--quiet")
    (work / "index.ipynb").write_text('{"cells": []}\n')
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "first")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def keep(folder: Path, commit: str = "HEAD", name: str = "analysis") -> RepositoryFiles:
    """A bare repository of ``commit`` on branch built, as the builder keeps it: root's,
    its top folder root:VENV_GROUP 0750."""
    work = folder / name
    sha = git(work, "rev-parse", commit)
    kept = folder / "venv" / f"{sha}.git"
    kept.parent.mkdir(exist_ok=True)
    os.chmod(kept.parent, 0o755)
    if not kept.exists():
        subprocess.run(["git", "init", "--quiet", "--bare", str(kept)], check=True)
        git(kept, "fetch", "--quiet", "--", str(work), f"+{sha}:refs/heads/built")
        os.chown(kept, 0, VENV_GROUP)
        os.chmod(kept, 0o750)
    return RepositoryFiles(kept, sha, "analysis")


def spec_for(folder: Path, files: RepositoryFiles) -> LaunchSpec:
    return LaunchSpec(
        username="ada",
        environment=EnvironmentSpec("ada.analysis", "venv"),
        profile="small",
        cpu=1,
        memory_bytes=2**30,
        home=folder / "homes" / "ada",
        default_url="/lab/tree/analysis",
        repository_files=files,
    )


def prepare(spec: LaunchSpec, groups=(VENV_GROUP,)) -> None:
    asyncio.run(prepare_home(spec, NOBODY, groups=groups))


def commit(folder: Path, files: dict[str, str], message: str) -> None:
    work = folder / "analysis"
    for name, text in files.items():
        (work / name).write_text(text)
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", message)


def test_first_launch_clones_a_newer_build_merges_and_the_users_edits_stay(folder):
    spec = spec_for(folder, keep(folder))
    copy = spec.home / "analysis"

    prepare(spec)
    assert (copy / "index.ipynb").read_text() == '{"cells": []}\n'
    assert (copy.stat().st_uid, (copy / "index.ipynb").stat().st_uid) == (65534, 65534)

    (copy / "index.ipynb").write_text("ada's edits\n")
    (copy / "results.csv").write_text("ada's own file, in the way of a new one\n")
    os.chown(copy / "results.csv", *NOBODY)
    commit(folder, {"fit.ipynb": "new\n", "results.csv": "upstream\n"}, "second")
    commit(folder, {"index.ipynb": '{"cells": [1]}\n'}, "third")
    prepare(spec_for(folder, keep(folder)))

    assert (copy / "index.ipynb").read_text() == "ada's edits\n"
    assert (copy / "fit.ipynb").read_text() == "new\n"
    assert (copy / "results.csv").read_text() == "upstream\n"
    renamed = [p for p in copy.iterdir() if p.name.startswith("results__")]
    assert [p.read_text() for p in renamed] == ["ada's own file, in the way of a new one\n"]


def test_a_launch_of_the_same_build_leaves_the_folder_alone(folder):
    spec = spec_for(folder, keep(folder))
    prepare(spec)
    (spec.home / "analysis" / "index.ipynb").unlink()

    prepare(spec)

    assert not (spec.home / "analysis" / "index.ipynb").exists()


def test_without_the_environments_group_the_source_is_out_of_reach(folder, caplog):
    spec = spec_for(folder, keep(folder))

    prepare(spec, groups=())

    assert not (spec.home / "analysis").exists()
    assert "the repository's files were not updated" in caplog.text


@pytest.mark.parametrize("target", ["outside", "/etc"])
def test_a_link_at_the_folders_name_is_refused_and_its_target_untouched(folder, target):
    """The attack: ~/analysis → a folder outside the home that the user may even write."""
    outside = folder / "outside"
    outside.mkdir()
    os.chown(outside, *NOBODY)
    spec = spec_for(folder, keep(folder))
    spec.home.mkdir(mode=0o700)
    os.chown(spec.home, *NOBODY)
    (spec.home / "analysis").symlink_to(folder / target)
    before = sorted(os.listdir(folder / target))

    with pytest.raises(HomeError) as refused:
        prepare(spec)

    assert "~/analysis is a symbolic link" in str(refused.value)
    assert "Rename or remove ~/analysis" in str(refused.value)
    assert sorted(os.listdir(folder / target)) == before
    assert (spec.home / "analysis").is_symlink()


def test_a_folder_that_is_no_copy_of_the_repository_is_left_alone(folder):
    spec = spec_for(folder, keep(folder))
    (spec.home / "analysis").mkdir(parents=True)
    (spec.home / "analysis" / "thesis.tex").write_text("mine")

    with pytest.raises(HomeError) as refused:
        prepare(spec)

    assert "~/analysis exists but is not your copy of the repository" in str(refused.value)
    assert os.listdir(spec.home / "analysis") == ["thesis.tex"]


def test_links_in_a_hostile_repository_reach_only_what_the_user_may_read(folder):
    """The repository links to /etc/shadow and to another user's home: checked out as
    links, by the user, and reading through them is refused by the kernel."""
    other_home = folder / "homes" / "bob"
    other_home.mkdir(mode=0o700)
    (other_home / "notes.txt").write_text("bob's notes")
    work = folder / "analysis"
    (work / "shadow").symlink_to("/etc/shadow")
    (work / "bob").symlink_to(other_home)
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "links")
    shadow = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()
    spec = spec_for(folder, keep(folder))

    prepare(spec)

    copy = spec.home / "analysis"
    assert os.readlink(copy / "shadow") == "/etc/shadow"
    assert os.readlink(copy / "bob") == str(other_home)
    reads = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "cat",
            str(copy / "shadow"),
            str(copy / "bob" / "notes.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert reads.stdout == "" and reads.stderr.count("Permission denied") == 2
    assert hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest() == shadow
    assert os.listdir(other_home) == ["notes.txt"]
    assert other_home.stat().st_uid == 0


def test_a_tree_entry_named_dot_dot_writes_nothing_outside_the_folder(folder, caplog):
    """A commit whose tree holds '..' and '.git' entries (git itself never makes one)."""
    work = folder / "analysis"
    (folder / "payload").write_text("escaped\n")
    blob = git(work, "hash-object", "-w", str(folder / "payload"))
    entries = b"".join(
        b"100644 " + name + b"\0" + bytes.fromhex(blob) for name in (b"..", b".git", b"ok.txt")
    )
    tree = (
        subprocess.run(
            ["git", "-C", str(work), "hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
            input=entries,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    head = git(work, "rev-parse", "HEAD")
    hostile = git(work, "commit-tree", tree, "-p", head, "-m", "hostile")
    git(work, "update-ref", "refs/heads/hostile", hostile)
    before = sorted(os.listdir(folder / "homes"))

    prepare(spec_for(folder, keep(folder, "hostile")))

    home = folder / "homes" / "ada"
    assert sorted(os.listdir(folder / "homes")) == before + ["ada"]
    assert sorted(os.listdir(home)) == ["analysis"]
    assert not any(p.read_text() == "escaped\n" for p in home.rglob("*") if _plain(p))
    assert "the repository's files were not updated" in caplog.text


def _plain(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and ".git" not in path.parts
