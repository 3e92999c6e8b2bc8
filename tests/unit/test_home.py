"""Preparing a home: examples once, handed to the owner, and the attacks a user can stage.

The child that works inside the home really runs as another account (nobody), so these
tests need root, as the hub has; the folders are below /tmp so that account may enter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from kioskhub.spawner.home import HomeError, files_group, prepare_home
from kioskhub.spawner.home_setup import EXAMPLES_LEDGER
from kioskhub.spawner.launch_spec import EnvironmentSpec, LaunchSpec, RepositoryFiles
from tests.conftest import open_folder

NOBODY = (65534, 65534)


@pytest.fixture
def folder():
    if os.geteuid() != 0:
        pytest.fail("handing a home to another account needs root; run the tests as root")
    folder = open_folder("home")
    examples = folder / "examples"
    examples.mkdir()
    (examples / "getting-started.ipynb").write_text("{}")
    (examples / "dask.ipynb").write_text("{}")
    (examples / ".ipynb_checkpoints").mkdir()
    os.chmod(examples, 0o755)
    (folder / "homes").mkdir(mode=0o755)
    victim = folder / "root-only"
    victim.mkdir(mode=0o755)
    (victim / "precious.conf").write_text("root's")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def spec_for(folder: Path, name: str = "ada") -> LaunchSpec:
    return LaunchSpec(
        username=name,
        environment=EnvironmentSpec("default", "venv"),
        profile="small",
        cpu=1,
        memory_bytes=2**30,
        home=folder / "homes" / name,
        default_url="/lab",
        examples_source=folder / "examples",
    )


def prepare(spec: LaunchSpec, owner=NOBODY, **kwargs) -> list[str]:
    return asyncio.run(prepare_home(spec, owner, **kwargs))


def owners(folder: Path) -> dict[str, int]:
    """uid of ``folder`` and of everything below it, without following symlinks."""
    found = {str(folder): folder.lstat().st_uid}
    for path in folder.rglob("*"):
        found[str(path)] = path.lstat().st_uid
    return found


def test_home_receives_each_example_once(folder):
    spec = spec_for(folder)
    home = spec.home

    first = prepare(spec, None)
    (home / "examples" / "dask.ipynb").unlink()
    (home / "examples" / "getting-started.ipynb").write_text("my edits")
    (folder / "examples" / "new-in-spring.ipynb").write_text("{}")
    second = prepare(spec, None)
    third = prepare(spec, None)

    assert first == ["dask.ipynb", "getting-started.ipynb"]
    assert second == ["new-in-spring.ipynb"]
    assert third == []
    assert sorted(p.name for p in (home / "examples").iterdir()) == [
        "getting-started.ipynb",
        "new-in-spring.ipynb",
    ]
    assert (home / "examples" / "getting-started.ipynb").read_text() == "my edits"
    assert json.loads((home / EXAMPLES_LEDGER).read_text()) == [
        "dask.ipynb",
        "getting-started.ipynb",
        "new-in-spring.ipynb",
    ]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_home_is_handed_to_the_owner_and_filled_as_the_owner(folder):
    spec = spec_for(folder)

    assert prepare(spec, mount_points=("data",)) == ["dask.ipynb", "getting-started.ipynb"]

    home = spec.home
    for path in [home, home / "examples", home / "examples" / "dask.ipynb", home / "data"]:
        assert (path.stat().st_uid, path.stat().st_gid) == NOBODY, path
    assert (home / EXAMPLES_LEDGER).stat().st_uid == 65534


@pytest.mark.parametrize("target", ["root-only", "/etc"])
def test_examples_symlinked_to_a_root_folder_change_no_owner(folder, target, caplog):
    """The attack: ~/examples → a root folder, then the next start copies and chowns."""
    spec = spec_for(folder)
    prepare(spec)
    victim = folder / target
    shutil.rmtree(spec.home / "examples")
    (spec.home / "examples").symlink_to(victim)
    (spec.home / EXAMPLES_LEDGER).write_text("[]")
    before = owners(victim) if target != "/etc" else _etc_owners()

    with caplog.at_level(logging.WARNING, logger="JupyterHub"):
        assert prepare(spec) == []

    assert (owners(victim) if target != "/etc" else _etc_owners()) == before
    assert not (victim / "dask.ipynb").exists()
    assert "examples not copied: Permission denied" in caplog.text


def _etc_owners() -> dict[str, int]:
    return {entry.path: entry.stat(follow_symlinks=False).st_uid for entry in os.scandir("/etc")}


def test_ledger_folder_symlinked_to_a_root_folder_is_not_written(folder, caplog):
    spec = spec_for(folder)
    prepare(spec)
    shutil.rmtree(spec.home / ".kioskhub")
    (spec.home / ".kioskhub").symlink_to(folder / "root-only")

    with caplog.at_level(logging.WARNING, logger="JupyterHub"):
        prepare(spec)

    assert sorted(p.name for p in (folder / "root-only").iterdir()) == ["precious.conf"]
    assert "Permission denied" in caplog.text


def test_a_huge_ledger_is_not_read(folder, caplog):
    spec = spec_for(folder)
    prepare(spec)
    ledger = spec.home / EXAMPLES_LEDGER
    with open(ledger, "wb") as sparse:
        sparse.truncate(8 * 2**30)
    (folder / "examples" / "later.ipynb").write_text("{}")

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="JupyterHub"):
        assert prepare(spec) == []

    assert time.monotonic() - started < 10
    assert f"{ledger} is larger than 1048576 bytes; delete it" in caplog.text


def test_a_fifo_ledger_neither_blocks_nor_is_read(folder, caplog):
    spec = spec_for(folder)
    prepare(spec)
    ledger = spec.home / EXAMPLES_LEDGER
    ledger.unlink()
    os.mkfifo(ledger)
    os.chown(ledger, *NOBODY)

    with caplog.at_level(logging.WARNING, logger="JupyterHub"):
        assert asyncio.run(asyncio.wait_for(prepare_home(spec, NOBODY), 20)) == []

    assert f"{ledger} is not a regular file" in caplog.text


def test_a_symlinked_home_is_refused(folder):
    (folder / "homes" / "ada").symlink_to(folder / "root-only")
    with pytest.raises(HomeError, match="'ada' is or passes through a symbolic link; refused"):
        prepare(spec_for(folder))
    assert (folder / "root-only").stat().st_uid == 0
    assert stat.S_IMODE((folder / "root-only").stat().st_mode) == 0o755


def test_another_accounts_home_is_refused(folder):
    (folder / "homes" / "ada").mkdir()
    os.chown(folder / "homes" / "ada", 4242, 4242)
    with pytest.raises(HomeError, match="belongs to uid 4242, not to uid 65534"):
        prepare(spec_for(folder))


def test_a_mount_point_symlinked_to_etc_becomes_a_folder(folder):
    spec = spec_for(folder)
    prepare(spec)
    (spec.home / "data").symlink_to("/etc")
    before = _etc_owners()

    prepare(spec, mount_points=("data",))

    assert (spec.home / "data").is_dir() and not (spec.home / "data").is_symlink()
    assert _etc_owners() == before


def test_a_file_in_the_way_of_a_mount_point_is_named(folder):
    spec = spec_for(folder)
    prepare(spec)
    (spec.home / "data").write_text("mine")
    os.chown(spec.home / "data", *NOBODY)
    with pytest.raises(HomeError, match="~/data is in the way of the data mount data"):
        prepare(spec, mount_points=("data",))


def test_the_event_loop_runs_while_the_home_is_prepared(folder):
    async def ticks_during_prepare() -> int:
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        await prepare_home(spec_for(folder), NOBODY)
        ticker.cancel()
        return ticks

    assert asyncio.run(ticks_during_prepare()) > 3


def test_a_python_the_account_cannot_run_is_named(folder, monkeypatch, tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    (closed / "python").symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setattr("kioskhub.spawner.home.sys.executable", str(closed / "python"))
    with pytest.raises(HomeError, match=f"{closed}/python cannot run as your account"):
        prepare(spec_for(folder))


def test_the_files_group_is_only_that_of_a_root_folder_closed_to_an_environment_gid(folder):
    """The pod backend gives the home preparation a private holder's group, and nothing for
    a holder someone else owns, an open one, a link, or a group outside the range."""
    gids = range(4300, 4310)

    def files_in(name: str, uid: int, gid: int, mode: int) -> RepositoryFiles:
        holder = folder / name
        (holder / "kioskhub-repository" / "c.git").mkdir(parents=True)
        os.chown(holder, uid, gid)
        os.chmod(holder, mode)
        return RepositoryFiles(holder / "kioskhub-repository" / "c.git", "c", "beams")

    closed = files_in("closed", 0, 4301, 0o750)
    planted = files_in("planted", 4242, 4301, 0o750)
    opened = files_in("open", 0, 4301, 0o755)
    outside = files_in("outside", 0, 4242, 0o750)
    (folder / "linked").symlink_to(folder / "closed")
    linked = RepositoryFiles(folder / "linked" / "kioskhub-repository" / "c.git", "c", "b")

    assert files_group(closed, gids) == (4301,)
    assert [files_group(f, gids) for f in (planted, opened, outside, linked, None)] == [()] * 5
