"""Collecting work, without processes: the archive's names, the download guard, and what
root keeps of a participant's (possibly forged) tar stream."""

from __future__ import annotations

import io
import os
import tarfile
import time

import pytest

from kioskhub.hub import workshop_collect
from kioskhub.hub.workshop_collect import (
    CollectedFolder,
    CollectUnavailable,
    archive_name,
    collect,
    collection_path,
    collections,
    collections_folder,
    copy_stream,
    safe_member_name,
)
from kioskhub.hub.workshop_store import Event, Participant
from tests.unit.test_hub_settings import small_site

MOMENT = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def test_archive_names_are_utc_times_and_unique_by_suffix():
    assert archive_name(MOMENT) == "collected-20260528T202640Z.tar.gz"
    assert archive_name(MOMENT, 2) == "collected-20260528T202640Z-2.tar.gz"
    assert workshop_collect.ARCHIVE_PATTERN.fullmatch(archive_name(MOMENT, 2))


def test_a_bad_event_id_names_no_folder(tmp_path):
    assert collections_folder(tmp_path, "abc234") == tmp_path / "workshops" / "abc234"
    with pytest.raises(ValueError, match="not an event id"):
        collections_folder(tmp_path, "../abc")


def test_download_names_must_be_in_the_listing(tmp_path):
    folder = collections_folder(tmp_path, "abc234")
    folder.mkdir(parents=True)
    (folder / archive_name(MOMENT)).write_bytes(b"x")
    (folder / ".collecting-1-2").write_bytes(b"half")
    (folder / archive_name(MOMENT + 1)).symlink_to("/etc/shadow")
    (tmp_path / "secret.tar.gz").write_bytes(b"secret")
    names = [c["name"] for c in collections(tmp_path, "abc234")]
    assert names == [archive_name(MOMENT)]
    assert collection_path(tmp_path, "abc234", archive_name(MOMENT)) == folder / names[0]
    for attempt in (
        "../../secret.tar.gz",
        "..%2F..%2Fsecret.tar.gz",
        ".collecting-1-2",
        archive_name(MOMENT + 1),  # a link
        archive_name(MOMENT + 2),  # not there
        f"../abc234/{archive_name(MOMENT)}",
    ):
        assert collection_path(tmp_path, "abc234", attempt) is None, attempt
    assert collections(tmp_path, "zzz999") == []


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("materials/a.ipynb", "materials/a.ipynb"),
        ("./materials/sub/b.txt", "materials/sub/b.txt"),
        ("materials", "materials"),
        ("materials/../../etc/passwd", None),
        ("/etc/passwd", None),
        ("other/a.txt", None),
        ("materialsX/a.txt", None),
        ("", None),
    ],
)
def test_member_names_stay_in_the_folder(name, kept):
    assert safe_member_name(name, "materials") == kept


def tar_stream(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, kind=tarfile.REGTYPE, data: bytes | None = None, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.uid = info.gid = 4242
    info.mode = 0o4755 if kind == tarfile.REGTYPE else 0o777
    if data is not None:
        info.size = len(data)
    return info, data


def copied(stream: bytes, tmp_path) -> tuple[CollectedFolder, dict[str, tarfile.TarInfo], dict]:
    result = CollectedFolder("ada", "Ada")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        try:
            copy_stream(io.BytesIO(stream), "materials", "ada", out, tmp_path, result)
        except (workshop_collect.StreamTooLarge, tarfile.TarError, EOFError) as error:
            result.error = type(error).__name__
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as archive:
        members = {m.name: m for m in archive.getmembers()}
        contents = {m.name: archive.extractfile(m).read() for m in members.values() if m.isreg()}
    return result, members, contents


def test_root_keeps_only_files_and_folders_inside_the_materials(tmp_path):
    stream = tar_stream(
        [
            entry("materials", tarfile.DIRTYPE),
            entry("materials/notebook.ipynb", data=b'{"cells": []}'),
            entry("materials/evil", tarfile.SYMTYPE, link="/etc/shadow"),
            entry("materials/hard", tarfile.LNKTYPE, link="materials/notebook.ipynb"),
            entry("materials/tty", tarfile.CHRTYPE),
            entry("materials/../../root/.bashrc", data=b"escape"),
            entry("/etc/cron.d/evil", data=b"escape"),
            entry("elsewhere/x.txt", data=b"escape"),
        ]
    )
    result, members, contents = copied(stream, tmp_path)
    assert sorted(members) == ["ada/materials", "ada/materials/notebook.ipynb"]
    assert contents == {"ada/materials/notebook.ipynb": b'{"cells": []}'}
    notebook = members["ada/materials/notebook.ipynb"]
    assert (notebook.mode, notebook.uid, notebook.gid) == (0o755, 0, 0)  # no setuid bit kept
    assert result.links == [{"name": "materials/evil", "target": "/etc/shadow"}]
    assert result.skipped == [
        "materials/hard",
        "materials/tty",
        "materials/../../root/.bashrc",
        "/etc/cron.d/evil",
        "elsewhere/x.txt",
    ]
    assert (result.files, result.bytes, result.error) == (1, 13, None)


def test_a_folder_over_the_limit_stops_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(workshop_collect, "MAX_BYTES_PER_PARTICIPANT", 1000)
    stream = tar_stream([entry(f"materials/{n}.bin", data=b"x" * 400) for n in range(5)])
    result, members, _ = copied(stream, tmp_path)
    assert result.error == "StreamTooLarge"
    assert (result.files, result.bytes) == (2, 800)
    assert len(members) == 2


def test_too_many_entries_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(workshop_collect, "MAX_FILES_PER_PARTICIPANT", 3)
    stream = tar_stream([entry(f"materials/{n}", tarfile.DIRTYPE) for n in range(10)])
    result, members, _ = copied(stream, tmp_path)
    assert result.error == "StreamTooLarge"
    assert len(members) == 3


def test_a_stream_cut_inside_a_file_leaves_no_half_entry(tmp_path):
    whole = tar_stream(
        [entry("materials/a.txt", data=b"a" * 100), entry("materials/b.txt", data=b"b" * 5000)]
    )
    result, members, contents = copied(whole[: 512 * 4 + 1000], tmp_path)
    assert result.error is not None
    assert list(contents) == ["ada/materials/a.txt"]
    assert list(members) == ["ada/materials/a.txt"]


def test_kubernetes_is_refused_with_a_reason(tmp_path):
    site = small_site(
        tmp_path,
        spawner={"backend": "kubernetes"},
        pods={"image": "quay.io/jupyter/base-notebook"},
        workshops={"enabled": True},
    )
    event = Event(
        "abc234", "Class", "teacher", "default", "small", "", "", 10,
        time.time(), time.time() + 3600, 0, "CODE", time.time(),
    )
    with pytest.raises(
        CollectUnavailable,
        match="local and podman backends only; this site uses 'kubernetes', where homes",
    ):
        collect(site, event, [Participant("abc234", "ada", "Ada", time.time(), False)])
    assert not os.path.exists(collections_folder(site.hub.state_dir, "abc234"))
