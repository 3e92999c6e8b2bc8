"""The local backend's plan and launcher checks: mount points, restricted sources."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from kioskhub.extensions.data_reads import MOUNTS_ENV
from kioskhub.spawner.launch_spec import (
    DATA_MOUNTS_ENV,
    EnvironmentSpec,
    LaunchSpec,
    MountSpec,
    data_mounts_env,
)
from kioskhub.spawner.local_launcher import check_private_source
from kioskhub.spawner.local_plan import Account, Bind, local_launch
from kioskhub.spawner.root_paths import UnsafePathError
from tests.conftest import open_folder


def spec_with_mounts(home: Path) -> LaunchSpec:
    return LaunchSpec(
        username="ada",
        environment=EnvironmentSpec("default", "venv"),
        profile="small",
        cpu=1,
        memory_bytes=2**30,
        home=home,
        default_url="/lab",
        mounts=(
            MountSpec("data", Path("/srv/data"), "/data", True),
            MountSpec("beam", Path("/srv/closed/beam"), "/beam", False, ("physics",)),
        ),
        env={"KIOSKHUB_ENVIRONMENT": "default"},
    )


def test_plan_marks_restricted_mounts_and_names_the_home_mount_points():
    home = Path("/homes/ada")
    plan = local_launch(
        spec_with_mounts(home), own_prefix=Path("/venv"), account=Account("kh-ada", 1001, 1001)
    )
    assert plan.binds == (
        Bind("/srv/data", "/data", True),
        Bind("/srv/data", "/homes/ada/data", True),
        Bind("/srv/closed/beam", "/beam", False, private=True),
        Bind("/srv/closed/beam", "/homes/ada/beam", False, private=True),
    )
    assert plan.home_mount_points == ("data", "beam")
    launcher_plan = json.loads(plan.launcher_argv("/venv/bin/python")[3])
    assert launcher_plan["binds"][2] == {
        "source": "/srv/closed/beam",
        "target": "/beam",
        "read_only": False,
        "private": True,
    }


def test_the_launch_names_every_folder_where_the_server_sees_each_mount():
    assert DATA_MOUNTS_ENV == MOUNTS_ENV  # the name the kernel's recorder reads
    isolated = local_launch(
        spec_with_mounts(Path("/homes/ada")),
        own_prefix=Path("/venv"),
        account=Account("kh-ada", 1001, 1001),
    )
    assert isolated.env[DATA_MOUNTS_ENV] == (
        '[{"name": "data", "paths": ["/data", "/homes/ada/data"]}, '
        '{"name": "beam", "paths": ["/beam", "/homes/ada/beam"]}]'
    )
    shared = local_launch(
        spec_with_mounts(Path("/homes/ada")), own_prefix=Path("/venv"), account=None
    )
    assert shared.env[DATA_MOUNTS_ENV] == (
        '[{"name": "data", "paths": ["/srv/data", "/homes/ada/data"]}, '
        '{"name": "beam", "paths": ["/srv/closed/beam", "/homes/ada/beam"]}]'
    )
    assert data_mounts_env([]) == {}


def test_a_restricted_source_must_sit_below_a_closed_root_folder():
    if os.geteuid() != 0:
        pytest.fail("the check wants root-owned folders; run the tests as root")
    tmp_path = open_folder("launcher")
    source = tmp_path / "outer" / "beam"
    source.mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / "outer", 0o755)
    with pytest.raises(UnsafePathError, match=f"data source {source} is reachable by every"):
        check_private_source(str(source))

    os.chmod(tmp_path / "outer", 0o700)
    check_private_source(str(source))

    os.chown(tmp_path / "outer", 4242, 4242)
    with pytest.raises(UnsafePathError, match="move it into a folder only root may enter"):
        check_private_source(str(source))
    shutil.rmtree(tmp_path)
