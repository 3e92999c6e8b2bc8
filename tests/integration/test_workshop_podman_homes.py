"""Collecting work and removing homes on the podman backend, with real folders, a real tar
and a real child process (no hub, no pod): every participant's home belongs to the same
pods' account, so the kernel does not keep them apart, and nothing may be followed out
of the one home being read or removed.

The homes are stand-ins under /tmp (``open_folder``); the "system" folder a link points
at is a root-owned stand-in for ``/etc``, never the real one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from kioskhub.hub.workshop_collect import collect_with_manifest
from kioskhub.hub.workshop_home_owner import HomeOwner, temporary_home_owner
from kioskhub.hub.workshop_home_removal import HomeNotRemoved, remove_home
from kioskhub.hub.workshop_store import Event, Participant
from tests.conftest import open_folder
from tests.unit.test_hub_settings import small_site

pytestmark = pytest.mark.integration

PODS = 65531
"""The pods' uid and gid: every participant's home belongs to it."""
STRANGER = 65530


@pytest.fixture
def podman_site():
    if os.geteuid() != 0:
        pytest.fail("tar and the emptying child run as the pods' account: run this as root")
    folder = open_folder("workshop-podman-homes")
    (folder / "state").mkdir(mode=0o700)
    (folder / "homes").mkdir(mode=0o755)
    site = small_site(
        folder,
        spawner={"backend": "podman", "start_timeout": 30},
        pods={"uid": PODS, "gid": PODS},
        workshops={"enabled": True},
    )
    yield site, folder
    shutil.rmtree(folder, ignore_errors=True)


def home(homes: Path, name: str, files: dict[str, str], uid: int = PODS) -> Path:
    """A home as the podman spawner leaves it: the pods' account owns all of it."""
    path = homes / name
    (path / "materials").mkdir(parents=True)
    for relative, text in files.items():
        (path / "materials" / relative).write_text(text)
    path.chmod(0o700)
    return path


def own(path: Path, uid: int = PODS) -> None:
    for root, folders, names in os.walk(path):
        for entry in [root, *(os.path.join(root, n) for n in folders + names)]:
            os.lchown(entry, uid, uid)


def read_as_pods(path: Path) -> str:
    """What the pods' account reads at ``path``: the kernel's answer, not KioskHub's."""
    return subprocess.run(
        ["/bin/cat", str(path)], user=PODS, group=PODS, extra_groups=[],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout  # fmt: skip


def collect_now(site, names: list[str]):
    event = Event("pod234", "Class", "tess", "default", "small", "", "", 10, 0, 1, 0, "", 0)
    seats = [Participant("pod234", name, name, time.time(), True) for name in names]
    path, manifest = collect_with_manifest(site, event, seats)
    with tarfile.open(path) as archive:
        contents = {m.name: archive.extractfile(m).read() for m in archive if m.isreg()}
    return {p["username"]: p for p in manifest["participants"]}, contents


def test_a_link_to_another_participants_home_brings_nothing_though_the_uid_is_shared(
    podman_site,
):
    site, folder = podman_site
    homes = folder / "homes"
    otto = home(homes, "ws-pod234-002", {"secret.txt": "otto's secret"})
    pam = home(homes, "ws-pod234-001", {"answer.txt": "42"})
    (pam / "materials" / "otto-home").symlink_to(otto)
    (pam / "materials" / "otto-secret").symlink_to(otto / "materials" / "secret.txt")
    # rita's whole materials folder is a link to otto's: tar must not follow it.
    rita = home(homes, "ws-pod234-003", {})
    (rita / "materials").rmdir()
    (rita / "materials").symlink_to(otto / "materials")
    # Pam's own folder reached through a link chain must not be followed either.
    (pam / "materials" / "loop").symlink_to(pam / "materials")
    for path in (otto, pam, rita):
        own(path)
    # The kernel would let the pods' account read otto's secret: only not following
    # keeps it out of pam's and rita's collections.
    assert read_as_pods(pam / "materials" / "otto-secret") == "otto's secret"

    lines, contents = collect_now(site, ["ws-pod234-001", "ws-pod234-003"])

    assert sorted(contents) == ["manifest.json", "ws-pod234-001/materials/answer.txt"]
    assert b"otto's secret" not in b"".join(contents.values())
    assert lines["ws-pod234-001"]["files"] == 1 and lines["ws-pod234-001"]["error"] is None
    assert {link["name"] for link in lines["ws-pod234-001"]["links"]} == {
        "materials/otto-home",
        "materials/otto-secret",
        "materials/loop",
    }
    assert lines["ws-pod234-003"]["error"] == (
        "~/materials is a symbolic link; links are not followed"
    )
    assert (otto / "materials" / "secret.txt").read_text() == "otto's secret"


def test_only_homes_the_podman_spawner_made_are_read(podman_site):
    site, folder = podman_site
    homes = folder / "homes"
    stranger = home(homes, "ws-pod234-004", {"theirs.txt": "not a participant's"})
    own(stranger, STRANGER)
    root_owned = home(homes, "ws-pod234-005", {"root.txt": "root's"})
    (homes / "ws-pod234-006").symlink_to(stranger)
    lines, contents = collect_now(site, ["ws-pod234-004", "ws-pod234-005", "ws-pod234-006"])
    assert sorted(contents) == ["manifest.json"]
    assert lines["ws-pod234-004"]["error"] == (
        f"the home belongs to uid {STRANGER}, neither the pods' account (uid {PODS}) nor "
        "the participant's lab identity: the spawner did not make it"
    )
    assert lines["ws-pod234-005"]["error"] == "the home belongs to root, not to the participant"
    assert lines["ws-pod234-006"]["error"] == "the home is not a folder"
    assert root_owned.is_dir()


def test_removing_a_podman_home_follows_no_link_and_leaves_the_shared_uids_files(
    podman_site,
):
    site, folder = podman_site
    homes = folder / "homes"
    name = "ws-pod234-001"
    other = home(homes, "ws-oth234-001", {"keep.txt": "another event's work"})
    gone = home(homes, name, {"work.py": "print(42)"})
    (gone / "materials" / "sealed").mkdir()
    (gone / "materials" / "sealed" / "inside.txt").write_text("x")
    (gone / "other-home").symlink_to(other)
    (gone / "materials" / "other-file").symlink_to(other / "materials" / "keep.txt")
    system = folder / "system-etc"  # a root-owned stand-in for /etc
    system.mkdir(mode=0o755)
    (system / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (gone / "etc").symlink_to(system)
    for path in (other, gone):
        own(path)
    (gone / "materials" / "sealed").chmod(0o500)
    # A file of the shared uid in /tmp is not this participant's: it stays.
    shared_tmp = folder.parent / f"{folder.name}-pods-tmp"
    shared_tmp.write_text("another pod's scratch")
    os.chown(shared_tmp, PODS, PODS)
    try:
        owner = temporary_home_owner(site, name)
        assert owner == HomeOwner(PODS, PODS, shared=True)
        done = asyncio.run(remove_home(gone, owner.uid, owner.gid, shared=owner.shared))
        assert done == f"removed the home folder {gone}"
        assert not os.path.lexists(gone)
        assert (other / "materials" / "keep.txt").read_text() == "another event's work"
        assert os.stat(other).st_uid == PODS and (os.stat(other).st_mode & 0o777) == 0o700
        assert (system / "passwd").read_text() == "root:x:0:0:root:/root:/bin/bash\n"
        assert os.stat(system / "passwd").st_uid == 0
        assert shared_tmp.read_text() == "another pod's scratch"
    finally:
        shared_tmp.unlink(missing_ok=True)


def test_a_seat_home_that_is_a_link_to_another_home_is_not_removed(podman_site):
    site, folder = podman_site
    homes = folder / "homes"
    other = home(homes, "ws-oth234-002", {"keep.txt": "kept"})
    own(other)
    (homes / "ws-pod234-002").symlink_to(other)
    owner = temporary_home_owner(site, "ws-pod234-002")
    with pytest.raises(HomeNotRemoved, match="is not a folder; left as it is"):
        asyncio.run(remove_home(homes / "ws-pod234-002", owner.uid, owner.gid, shared=True))
    assert (other / "materials" / "keep.txt").read_text() == "kept"
