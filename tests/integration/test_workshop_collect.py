"""Collecting work with real tar processes run as the participants' accounts (no hub):
links to another user's home or root's files bring nothing, limits hold, and every
failure is a line of the manifest, never an error of the whole collection."""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from kioskhub.hub import workshop_collect
from kioskhub.hub.workshop_collect import collect_with_manifest
from kioskhub.hub.workshop_store import Event, Participant
from tests.conftest import open_folder
from tests.unit.test_hub_settings import small_site

pytestmark = pytest.mark.integration

PAM, OTTO, RITA = 65534, 65533, 65532
"""uids (and gids) of three participants; no account is needed to run as a number."""


@pytest.fixture
def homes():
    if os.geteuid() != 0:
        pytest.fail("collecting runs tar as each participant: run this test as root")
    folder = open_folder("workshop-collect")
    (folder / "state").mkdir(mode=0o700)
    site = small_site(folder, workshops={"enabled": True})
    yield site, folder / "homes"
    shutil.rmtree(folder, ignore_errors=True)


def home(homes: Path, name: str, uid: int, files: dict[str, str]) -> Path:
    path = homes / name
    (path / "materials").mkdir(parents=True)
    for relative, text in files.items():
        (path / "materials" / relative).write_text(text)
    for root, folders, names in os.walk(path):
        for entry in [root, *(os.path.join(root, n) for n in folders + names)]:
            os.lchown(entry, uid, uid)
    path.chmod(0o700)
    return path


def seat(name: str) -> Participant:
    return Participant("cls234", name, name.title(), time.time(), False)


def collect_now(site, names: list[str]):
    event = Event("cls234", "Class", "tess", "default", "small", "", "", 10, 0, 1, 0, "", 0)
    path, manifest = collect_with_manifest(site, event, [seat(name) for name in names])
    with tarfile.open(path) as archive:
        contents = {m.name: archive.extractfile(m).read() for m in archive if m.isreg()}
    return {p["username"]: p for p in manifest["participants"]}, contents


def test_links_to_other_homes_and_root_files_bring_nothing(homes):
    site, root = homes
    otto = home(root, "otto", OTTO, {"secret.txt": "otto's secret"})
    pam = home(root, "pam", PAM, {"answer.txt": "42"})
    (pam / "materials" / "otto").symlink_to(otto)
    (pam / "materials" / "shadow").symlink_to("/etc/shadow")
    planted = pam / "materials" / "root-only.txt"
    planted.write_text("root's note")
    planted.chmod(0o600)  # root's file in pam's folder: pam cannot read it, so neither may tar
    lines, contents = collect_now(site, ["pam"])
    assert sorted(contents) == ["manifest.json", "pam/materials/answer.txt"]
    everything = b"".join(contents.values())
    assert b"otto's secret" not in everything and b"root's note" not in everything
    shadow = Path("/etc/shadow")
    if shadow.exists():  # root's planted note proves it where a machine has no shadow
        assert shadow.read_bytes() not in everything
    assert {link["name"] for link in lines["pam"]["links"]} == {
        "materials/otto",
        "materials/shadow",
    }
    assert lines["pam"]["files"] == 1 and lines["pam"]["error"] is None
    assert any("root-only.txt: Cannot open: Permission denied" in w
               for w in lines["pam"]["warnings"])  # fmt: skip


def test_each_participants_failure_is_a_line_of_the_manifest(homes, monkeypatch):
    site, root = homes
    monkeypatch.setattr(workshop_collect, "MAX_BYTES_PER_PARTICIPANT", 1000)
    home(root, "pam", PAM, {"a.txt": "x" * 600, "b.txt": "y" * 600})
    otto = home(root, "otto", OTTO, {})
    (otto / "materials").rmdir()
    rita = home(root, "rita", RITA, {})
    (rita / "materials").rmdir()
    (rita / "materials").symlink_to(otto)
    (root / "root-owned" / "materials").mkdir(parents=True)
    lines, contents = collect_now(site, ["pam", "otto", "rita", "nobody", "root-owned"])
    assert lines["pam"]["files"] == 1
    assert lines["pam"]["error"] == (
        "larger than 1000 bytes or 10000 files; the first 1 files were collected"
    )
    assert lines["otto"]["error"] == "there is no ~/materials folder"
    assert lines["rita"]["error"] == "~/materials is a symbolic link; links are not followed"
    assert lines["nobody"]["error"] == "no home folder: the participant never started a server"
    assert lines["root-owned"]["error"] == "the home belongs to root, not to the participant"
    assert len([name for name in contents if name.startswith("pam/")]) == 1
