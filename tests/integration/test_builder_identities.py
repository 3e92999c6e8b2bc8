"""Each build as a fresh identity in a cgroup of its own, and nothing of it left afterwards.

Real builds with the local builder, as root: a postBuild that leaves a ``setsid sleep``
behind and plants a link where root writes the environment's marker; one that leaves files
and a setgid program in ``/tmp``, ``/var/tmp`` and ``/dev/shm``; what a build's identity
may write and see; and that the sealed venv, the server layer and other owners' caches stay
root's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kioskhub.hub.schema.builder import BuilderSettings, environment_gids
from kioskhub.image_builder.build_identity import identity_pool
from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.build_sandbox import (
    make_workdir,
    minimal_environment,
    remove_tree,
    run_step,
)
from kioskhub.image_builder.builder_base import BuildFailed, BuildRequest
from kioskhub.image_builder.local_builder import MARKER, LocalBuilder
from kioskhub.image_builder.source_safety import check_repository_url
from tests.conftest import open_folder

pytestmark = pytest.mark.integration

LINGER = """#!/bin/bash
setsid sleep 1000 > /dev/null 2>&1 < /dev/null &
echo "lingering $!" > "$VIRTUAL_ENV/share/lingering.txt"
"""
PLANT = """#!/bin/bash
ln -s {victim} "$VIRTUAL_ENV/kioskhub-environment.json"
"""
LEAVE_BEHIND = """#!/bin/bash
set -e
for folder in /tmp /var/tmp /dev/shm; do
    echo planted > "$folder/{name}"
done
cp /bin/true /tmp/{name}-setgid
chmod 2755 /tmp/{name}-setgid
test -g /tmp/{name}-setgid
if test -e {host_file}; then echo seen; else echo unseen; fi > "$VIRTUAL_ENV/share/host.txt"
echo made > "$TMPDIR/own-temporary-file"
grep NoNewPrivs /proc/self/status > "$VIRTUAL_ENV/share/privileges.txt"
"""


def need_root() -> None:
    assert os.geteuid() == 0, "these tests need root: builds switch to identities of their own"


def git_repository(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "spec"]):
        subprocess.run(
            ["git", "-C", str(folder), "-c", "user.name=A", "-c", "user.email=a@b", *args],
            check=True,
        )
    return folder


def request(repo: Path, owner: str = "ada") -> BuildRequest:
    source = check_repository_url(
        str(repo), allowed_schemes=(), allowed_hosts=(), allow_local_paths=True
    )
    return BuildRequest(build_id=1, owner=owner, name="x", source=source)


def running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module")
def state():
    folder = open_folder("identities")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def repos(state, request):
    """A folder for this test's repositories, that build identities may read."""
    folder = state / request.node.name[:40]
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def builder(state):
    need_root()
    return LocalBuilder(
        environments_dir=state / "environments",
        cache_dir=state / "cache",
        identities=identity_pool(BuilderSettings()),
    )


def test_a_step_runs_as_a_fresh_identity_and_its_setsid_child_ends_with_it(tmp_path):
    need_root()
    pool = identity_pool(BuilderSettings())

    async def main() -> tuple[int, str, int]:
        async with pool.identity("test") as account:
            env = minimal_environment(tmp_path)
            status, output = await run_step(
                ["/bin/bash", "-c", "setsid sleep 1001 </dev/null >/dev/null 2>&1 & id -u; id -G"],
                log=BuildLog(),
                account=account,
                cwd=Path("/"),
                env=env,
            )
            members = account.cgroup.members()
        return account.uid, output, len(members)

    uid, output, members = asyncio.run(main())
    first = BuilderSettings().build_uid_first
    assert output.split() == [str(uid), str(uid)]
    assert first <= uid < first + BuilderSettings().build_uid_count
    assert members == 1, "the setsid child was in the build's cgroup"
    assert running("sleep 1001") == []


def test_a_lingering_postbuild_leaves_nothing_and_the_venv_is_sealed(builder, repos):
    repo = git_repository(repos / "linger", {"postBuild": LINGER, "requirements.txt": ""})
    log = BuildLog()
    artifact = asyncio.run(builder.build(request(repo), log))
    venv = Path(artifact.venv_path)
    pid = int((venv / "share" / "lingering.txt").read_text().split()[1])
    assert not Path(f"/proc/{pid}").exists(), "the postBuild's setsid sleep outlived the build"
    assert running("sleep 1000") == []
    for path in (venv / "bin", venv / "share" / "lingering.txt", venv / MARKER):
        status = os.lstat(path)
        assert (status.st_uid, status.st_gid) == (0, 0), path
        assert not status.st_mode & 0o022, path
    top = os.lstat(venv)
    assert top.st_uid == 0 and oct(top.st_mode & 0o777) == oct(0o750), "ada's venv is private"
    assert top.st_gid in environment_gids(BuilderSettings())
    layers = list((builder.environments_dir / "server-layers").iterdir())
    assert [os.lstat(layer).st_uid for layer in layers] == [0]
    assert any("fresh identity of its own" in line for line in log.lines)


def test_root_never_writes_through_a_planted_marker_link(builder, repos):
    victim = repos / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o600)
    repo = git_repository(
        repos / "plant", {"postBuild": PLANT.format(victim=victim), "requirements.txt": ""}
    )
    with pytest.raises(BuildFailed) as failed:
        asyncio.run(builder.build(request(repo), BuildLog()))
    assert "the build made kioskhub-environment.json in the environment" in str(failed.value)
    assert victim.read_text() == "precious\n"
    assert oct(victim.stat().st_mode & 0o777) == oct(0o600)
    assert not [p for p in builder.environments_dir.iterdir() if p.name != "server-layers"][1:]


def test_caches_are_per_owner_and_not_another_builds(builder, repos):
    repo = git_repository(repos / "plain", {"requirements.txt": "# nothing\n"})
    first = asyncio.run(builder.build(request(repo, owner="ada"), BuildLog()))
    second = asyncio.run(builder.build(request(repo, owner="bob"), BuildLog()))
    assert first.venv_path != second.venv_path, "a venv is never shared between owners"
    caches = sorted(builder.cache_dir.iterdir())
    assert len(caches) >= 2
    assert oct(builder.cache_dir.stat().st_mode & 0o777) == oct(0o711)
    owners = {entry.stat().st_uid for entry in caches}
    assert 0 not in owners and len(owners) == len(caches), "each owner's cache, its last build's"


def test_a_build_leaves_nothing_in_the_temporary_folders_and_gains_no_privileges(builder, repos):
    name = f"left-behind-{os.getpid()}-{os.urandom(4).hex()}"
    host_file = Path("/tmp") / f"{name}-host"
    host_file.write_text("the host's\n")
    try:
        script = LEAVE_BEHIND.format(name=name, host_file=host_file)
        repo = git_repository(repos / "leave", {"postBuild": script, "requirements.txt": ""})
        artifact = asyncio.run(builder.build(request(repo), BuildLog()))
    finally:
        host_file.unlink()
    left = [
        path
        for path in (
            Path("/tmp") / name,
            Path("/var/tmp") / name,
            Path("/dev/shm") / name,
            Path("/tmp") / f"{name}-setgid",
        )
        if os.path.lexists(path)
    ]
    assert left == [], "the build's files outlived it in the host's temporary folders"
    share = Path(artifact.venv_path) / "share"
    assert (share / "host.txt").read_text() == "unseen\n", "the build saw the host's /tmp"
    assert (share / "privileges.txt").read_text().split() == ["NoNewPrivs:", "1"]


def test_a_step_sees_no_folder_below_tmp_that_a_closed_folder_hides(state):
    need_root()
    closed = state / "closed"
    inner = closed / "inner"
    inner.mkdir(parents=True)
    (inner / "secret.txt").write_text("for root only\n")
    os.chmod(closed, 0o700)
    os.chmod(inner, 0o755)
    os.chmod(inner / "secret.txt", 0o644)

    async def main() -> tuple[int, str]:
        async with identity_pool(BuilderSettings()).identity("test") as account:
            work = make_workdir(account)
            try:
                return await run_step(
                    ["/bin/cat", str(inner / "secret.txt")],
                    log=BuildLog(),
                    account=account.seeing(work, inner),
                    cwd=work,
                    env=minimal_environment(work),
                )
            finally:
                remove_tree(work)

    status, output = asyncio.run(main())
    assert status != 0 and "for root only" not in output
