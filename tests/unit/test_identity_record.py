"""The record of a server's lab identity that the Dask Gateway reads: its form, its file and
folder modes, and what root refuses to follow or believe."""

from __future__ import annotations

import os
import stat

import pytest

from kioskhub.spawner.identity_record import (
    RecordError,
    parse,
    read_record,
    record_path,
    remove_record,
    serialise,
    write_record,
)
from kioskhub.spawner.lab_identity import LabIdentity

ADA = LabIdentity(uid=20001, gid=20000, supplementary_gids=(20100, 20200), name="ada")


def test_a_record_is_one_json_object_per_user(tmp_path):
    assert record_path(tmp_path, "ada") == tmp_path / "identities" / "ada.json"
    assert serialise(ADA) == (
        b'{"gid": 20000, "name": "ada", "supplementary_gids": [20100, 20200], "uid": 20001}'
    )
    assert parse(serialise(ADA)) == ADA


@pytest.mark.parametrize("name", ["../ada", "ada/x", ".ada", "", "Ada"])
def test_a_name_that_is_no_hub_username_names_no_file(tmp_path, name):
    with pytest.raises(ValueError, match="is not a hub username"):
        record_path(tmp_path, name)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"[]", "not a JSON object"),
        (b'{"uid": "20001", "gid": 1, "supplementary_gids": [], "name": "a"}', "whole numbers"),
        (b'{"uid": 1, "gid": true, "supplementary_gids": [], "name": "a"}', "whole numbers"),
        (b'{"uid": 1, "gid": 1, "supplementary_gids": 5, "name": "a"}', "whole numbers"),
        (b'{"uid": 1, "gid": 1, "supplementary_gids": [], "name": ""}', "name must be"),
    ],
)
def test_parse_refuses_what_is_no_identity(data, message):
    with pytest.raises(ValueError, match=message):
        parse(data)


def test_written_root_only_and_read_back(tmp_path):
    write_record(tmp_path, "ada", ADA)

    folder, record = tmp_path / "identities", record_path(tmp_path, "ada")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert read_record(tmp_path, "ada") == ADA
    assert os.listdir(folder) == ["ada.json"], "a temporary file was left behind"

    later = LabIdentity(uid=20001, gid=20000, supplementary_gids=(), name="ada")
    write_record(tmp_path, "ada", later)
    assert read_record(tmp_path, "ada") == later

    remove_record(tmp_path, "ada")
    assert read_record(tmp_path, "ada") is None
    remove_record(tmp_path, "ada")  # twice is fine
    assert read_record(tmp_path / "nothing", "ada") is None


def test_a_link_planted_as_the_record_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    (tmp_path / "state" / "identities").mkdir(parents=True, mode=0o700)
    planted = record_path(tmp_path / "state", "ada")
    planted.symlink_to(victim)

    with pytest.raises(RecordError, match=f"{planted} cannot be opened as a file"):
        read_record(tmp_path / "state", "ada")
    write_record(tmp_path / "state", "ada", ADA)

    assert victim.read_text() == "root's own file\n"
    assert not planted.is_symlink()
    assert read_record(tmp_path / "state", "ada") == ADA


def test_a_link_planted_as_the_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    state = tmp_path / "state"
    state.mkdir()
    (state / "identities").symlink_to(elsewhere)

    for attempt in (
        lambda: write_record(state, "ada", ADA),
        lambda: read_record(state, "ada"),
        lambda: remove_record(state, "ada"),
    ):
        with pytest.raises(RecordError, match=f"{state / 'identities'} is not a folder"):
            attempt()
    assert os.listdir(elsewhere) == []


def test_a_record_that_others_may_write_is_not_believed(tmp_path):
    write_record(tmp_path, "ada", ADA)
    record = record_path(tmp_path, "ada")

    os.chmod(record, 0o622)
    with pytest.raises(RecordError, match=r"ada.json is owned by uid \d+ with mode 622"):
        read_record(tmp_path, "ada")

    os.chmod(record, 0o600)
    os.chown(record, 54321, -1)
    with pytest.raises(RecordError, match=f"only uid {os.geteuid()} may write it"):
        read_record(tmp_path, "ada")

    os.chown(record, os.geteuid(), -1)
    os.chmod(tmp_path / "identities", 0o777)
    with pytest.raises(RecordError, match="identities is owned by uid"):
        read_record(tmp_path, "ada")


def test_a_record_that_is_no_file_is_refused(tmp_path):
    (tmp_path / "identities").mkdir(mode=0o700)
    os.mkfifo(record_path(tmp_path, "ada"), 0o600)

    with pytest.raises(RecordError, match="ada.json is not a regular file"):
        read_record(tmp_path, "ada")
