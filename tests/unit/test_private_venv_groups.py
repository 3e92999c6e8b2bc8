"""Private venvs: the gid each gets (never one in use), and the group a server gets at launch.

The launch-time decision (``venv_group``) is tested on literal lstat results, and on real
folders and links made here as root; the gid choice on literal sets of gids in use.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from kioskhub.hub.schema.builder import BuilderSettings, environment_gids
from kioskhub.image_builder.build_cgroup import BuildLimits
from kioskhub.image_builder.build_identity import IdentityPool, choose_gid, venv_gids
from kioskhub.image_builder.build_sandbox import seal
from kioskhub.image_builder.builder_base import BuildFailed
from kioskhub.image_builder.local_builder import LocalBuilder
from kioskhub.spawner.local_files import environment_groups
from kioskhub.spawner.local_plan import LocalLaunch, venv_group
from tests.conftest import open_folder

GIDS = range(1_600_000_000, 1_600_000_064)
G = 1_600_000_007


def status(mode: int, uid: int = 0, gid: int = G) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    "lstat, expected",
    [
        (status(stat.S_IFDIR | 0o750), (G,)),
        (status(stat.S_IFDIR | 0o700), (G,)),
        (status(stat.S_IFDIR | 0o755), ()),
        (status(stat.S_IFDIR | 0o751), ()),
        (status(stat.S_IFDIR | 0o750, uid=1001), ()),
        (status(stat.S_IFLNK | 0o750), ()),
        (status(stat.S_IFREG | 0o750), ()),
        (status(stat.S_IFDIR | 0o750, gid=0), ()),
        (status(stat.S_IFDIR | 0o750, gid=27), ()),
        (status(stat.S_IFDIR | 0o750, gid=GIDS.stop), ()),
    ],
)
def test_a_server_gets_the_group_of_a_root_owned_closed_venv_only(lstat, expected):
    assert venv_group(lstat, GIDS) == expected


def plan_for(venv: Path) -> LocalLaunch:
    return LocalLaunch(command=[], env={"VIRTUAL_ENV": str(venv)}, home=Path("/nowhere"))


def test_the_group_is_read_from_the_venv_folder_itself_never_through_a_link():
    assert os.geteuid() == 0, "this test makes root-owned folders; run the tests as root"
    folder = open_folder("venvgroup")
    try:
        venv = folder / "venv"
        venv.mkdir()
        os.chown(venv, 0, G)
        os.chmod(venv, 0o750)
        (folder / "link").symlink_to(venv)
        assert environment_groups(plan_for(venv), GIDS) == (G,)
        assert environment_groups(plan_for(folder / "link"), GIDS) == ()
        assert environment_groups(plan_for(folder / "missing"), GIDS) == ()
        os.chmod(venv, 0o755)
        assert environment_groups(plan_for(venv), GIDS) == ()
        os.chmod(venv, 0o750)
        os.chown(venv, 4242, G)
        assert environment_groups(plan_for(venv), GIDS) == ()
    finally:
        shutil.rmtree(folder)


def test_the_plan_hands_its_groups_to_the_launcher():
    plan = LocalLaunch(command=["/v/bin/x"], env={}, home=Path("/h"), extra_groups=(G,))
    assert '"groups": [1600000007]' in plan.launcher_argv("/py")[3]


def test_a_venv_gid_is_never_one_in_use():
    busy = set(GIDS) - {GIDS[40]}
    assert choose_gid(GIDS, busy) == GIDS[40]
    assert choose_gid(GIDS, busy, pick=lambda n: 3) == GIDS[40], "a busy pick is not taken"
    assert choose_gid(GIDS, set(), pick=lambda n: 3) == GIDS[3]
    with pytest.raises(BuildFailed, match="every environment group of the reserved range"):
        choose_gid(GIDS, set(GIDS))


def test_the_pool_never_hands_a_gid_twice_nor_a_venv_s_to_a_build():
    pool = IdentityPool(
        first=GIDS.start, count=len(GIDS), limits=BuildLimits(2**30, 1.0, 64), groups=GIDS
    )
    given = {pool.take_group({GIDS[0]}) for _ in range(63)}
    assert len(given) == 63 and GIDS[0] not in given
    with pytest.raises(BuildFailed, match="every environment group"):
        pool.take_group({GIDS[0]})
    with pytest.raises(BuildFailed, match="every build identity"):
        pool.take()  # its build range lies inside the environment groups: none to take

    builds = IdentityPool(first=1_500_000_000, count=64, limits=BuildLimits(2**30, 1.0, 64))
    in_use = set(range(1_500_000_000, 1_500_000_032))
    taken = {builds.take(in_use) for _ in range(16)}
    assert not taken & in_use
    with pytest.raises(BuildFailed, match="every build identity"):
        builds.take(range(1_500_000_000, 1_500_000_064))


def test_the_venv_gids_are_those_of_the_top_folders():
    assert os.geteuid() == 0, "this test chowns folders; run the tests as root"
    folder = open_folder("venvgids")
    try:
        for name, gid in (("a", G), ("b", G + 1), ("c", 0)):
            (folder / name).mkdir()
            os.chown(folder / name, 0, gid)
        (folder / "a" / "inner").mkdir()
        os.chown(folder / "a" / "inner", 0, G + 2)
        assert venv_gids(folder) == {G, G + 1, 0}
        assert venv_gids(folder / "missing") == set()
    finally:
        shutil.rmtree(folder)


def test_sealing_with_a_group_closes_only_the_top_folder():
    assert os.geteuid() == 0, "sealing hands folders to root; run the tests as root"
    folder = open_folder("seal")
    try:
        venv = folder / "venv"
        (venv / "lib").mkdir(parents=True)
        (venv / "lib" / "mod.py").write_text("x = 1\n")
        for path in (venv, venv / "lib", venv / "lib" / "mod.py"):
            os.chown(path, 4242, 4242)
        seal(venv, G)
        top = os.lstat(venv)
        assert (top.st_uid, top.st_gid, oct(top.st_mode & 0o777)) == (0, G, oct(0o750))
        inner = os.lstat(venv / "lib" / "mod.py")
        assert (inner.st_uid, inner.st_gid, oct(inner.st_mode & 0o777)) == (0, 0, oct(0o644))
    finally:
        shutil.rmtree(folder)


def test_the_environment_groups_may_not_overlap_the_builds():
    assert environment_gids(BuilderSettings()) == range(1_600_000_000, 1_601_000_000)
    with pytest.raises(ValidationError, match="overlaps the build range 1500000000-1500999999"):
        BuilderSettings(environment_gid_first=1_500_500_000)


def test_private_venvs_of_an_earlier_version_are_closed_at_start():
    """Venvs that an earlier version left open to all: the service closes the private ones
    the catalog names, each to a group of its own, and leaves anything else alone."""
    assert os.geteuid() == 0, "this test hands folders to root; run the tests as root"
    folder = open_folder("earlier")
    try:
        environments = folder / "environments"
        venvs = {name: environments / name for name in ("ada", "bob", "unfinished")}
        for name, venv in venvs.items():
            venv.mkdir(parents=True)
            if name != "unfinished":
                (venv / "kioskhub-environment.json").write_text("{}")
            os.chmod(venv, 0o755)
        outside = folder / "outside"
        outside.mkdir()
        (outside / "kioskhub-environment.json").write_text("{}")
        os.chmod(outside, 0o755)
        pool = IdentityPool(
            first=1_500_000_000, count=64, limits=BuildLimits(2**30, 1.0, 64), groups=GIDS
        )
        builder = LocalBuilder(
            environments_dir=environments, cache_dir=folder / "cache", identities=pool
        )

        paths = [str(venvs["ada"]), str(venvs["bob"]), str(venvs["ada"])]
        paths += [str(venvs["unfinished"]), str(outside)]
        assert builder.close_private_venvs(paths) == 2

        groups = {os.lstat(venvs[name]).st_gid for name in ("ada", "bob")}
        assert len(groups) == 2 and groups <= set(GIDS)
        for name in ("ada", "bob"):
            assert oct(os.lstat(venvs[name]).st_mode & 0o777) == oct(0o750)
        for untouched in (venvs["unfinished"], outside):
            assert oct(os.lstat(untouched).st_mode & 0o777) == oct(0o755)
        assert builder.close_private_venvs(paths) == 0, "closed venvs are left as they are"
    finally:
        shutil.rmtree(folder)
