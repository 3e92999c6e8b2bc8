"""The data-reads recorder's pure parts, its checks of a record, and its cost per open.

The record is written by the user's kernel, so the server checks each file again before
hashing it: the attacks below edit a record to claim files outside the mounts, a FIFO
that would block a reader, and a link, and each is answered without a checksum.
"""

from __future__ import annotations

import hashlib
import os
import time
import timeit
from pathlib import Path

from kioskhub.extensions.data_reads import (
    DataMount,
    DataReadRecorder,
    mount_of,
    mount_roots,
    parse_mounts,
    record_path,
)
from kioskhub.extensions.data_reads_checksums import checksum_files, recorded_files
from kioskhub.extensions.data_reads_server import KERNEL_ARGUMENT, with_recorder


def test_mounts_from_the_environment_and_unusable_values():
    text = '[{"name": "data", "paths": ["/data", "relative", 3]}, {"name": 1}, "x"]'
    assert parse_mounts(text) == [DataMount("data", ("/data",))]
    assert parse_mounts("not json") == parse_mounts(None) == parse_mounts('{"a": 1}') == []


def test_which_paths_lie_in_a_mount(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data-other").mkdir()
    roots = mount_roots([DataMount("d", (str(tmp_path / "data"),))])
    assert mount_of(str(tmp_path / "data" / "x"), roots) == ("d", "x")
    assert mount_of(str(tmp_path / "data" / "sub" / "x"), roots) == ("d", "sub/x")
    assert mount_of(str(tmp_path / "data-other" / "x"), roots) is None
    assert mount_of(str(tmp_path / "data"), roots) is None


def test_the_record_is_named_by_the_kernel_beside_its_connection_file():
    assert record_path("/run/jupyter/kernel-1a2b.json") == Path(
        "/run/jupyter/kernel-1a2b.data-reads.json"
    )


def test_only_ipython_kernels_get_the_recorder():
    ipython = ["/venv/bin/python", "-m", "ipykernel_launcher", "-f", "/run/k.json"]
    assert with_recorder(ipython) == [*ipython, KERNEL_ARGUMENT]
    assert with_recorder([*ipython, KERNEL_ARGUMENT]) == [*ipython, KERNEL_ARGUMENT]
    assert with_recorder(["R", "--slave", "-e", "IRkernel::main()"]) == [
        "R",
        "--slave",
        "-e",
        "IRkernel::main()",
    ]


def entry(path: Path) -> dict:
    status = path.stat()
    return {"path": str(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def test_recorded_files_are_checked_then_hashed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "small.csv").write_bytes(b"1,2\n")
    (data / "big.bin").write_bytes(b"\0" * 4096)
    mounts = [DataMount("data", (str(data),))]

    answer = checksum_files(
        [entry(data / "small.csv"), entry(data / "big.bin")], mounts, max_bytes=1024
    )

    assert answer[0]["sha256"] == hashlib.sha256(b"1,2\n").hexdigest()
    assert answer[0]["mount"] == "data" and answer[0]["relative_path"] == "small.csv"
    assert answer[0]["size"] == 4
    assert answer[1]["sha256"] is None
    assert answer[1]["checksum_skipped"] == "larger than 9.53674e-07 GiB"


def test_hashing_stops_at_the_time_budget(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "slow.bin").write_bytes(b"\1" * 3 * 2**20)
    answer = checksum_files([entry(data / "slow.bin")], [DataMount("d", (str(data),))], budget_s=0)
    assert answer[0]["sha256"] is None
    assert answer[0]["checksum_skipped"] == "not hashed yet: ask again"


def test_an_edited_record_cannot_make_the_server_hash_files_outside_the_mounts(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not data")
    (data / "link.txt").symlink_to(outside / "secret.txt")
    mounts = [DataMount("data", (str(data),))]
    claimed = [
        entry(outside / "secret.txt"),
        {**entry(outside / "secret.txt"), "path": str(data / "link.txt")},
        {**entry(outside / "secret.txt"), "path": str(data / ".." / "outside" / "secret.txt")},
    ]

    answer = checksum_files(claimed, mounts)

    assert [a["sha256"] for a in answer] == [None, None, None]
    assert {a["checksum_skipped"] for a in answer} == {"not a file in the site's data mounts"}


def test_a_fifo_in_the_record_is_not_read_and_does_not_hang(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "pipe")
    claimed = {"path": str(data / "pipe"), "size": 0, "mtime_ns": 0}
    started = time.monotonic()
    answer = checksum_files([claimed], [DataMount("data", (str(data),))])
    assert time.monotonic() - started < 5
    assert answer[0]["checksum_skipped"] == "not a regular file"


def test_malformed_entries_of_a_record_are_dropped():
    record = {
        "files": [
            {"path": "/data/a", "size": 1, "mtime_ns": 2},
            {"path": "/data/b", "size": "1", "mtime_ns": 2},
            {"path": 5, "size": 1, "mtime_ns": 2},
            {"path": "/data/c", "size": -1, "mtime_ns": 2},
            {"path": "/data/d", "size": True, "mtime_ns": 2},
            "x",
        ]
    }
    assert recorded_files(record) == [{"path": "/data/a", "size": 1, "mtime_ns": 2}]
    assert recorded_files(["x"]) == recorded_files({"files": "x"}) == []


def test_an_open_outside_the_mounts_costs_almost_nothing(tmp_path):
    """The hook's cost for an open outside the mounts, beside what open+close costs."""
    (tmp_path / "data").mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    recorder = DataReadRecorder([DataMount("data", (str(tmp_path / "data"),))], tmp_path / "r")
    args = (str(outside), "r", os.O_RDONLY | os.O_CLOEXEC)

    def best_of(call, number=100_000) -> float:
        return min(timeit.repeat(call, number=number, repeat=7)) / number

    hook = best_of(lambda: recorder.audit("open", args)) - best_of(lambda: None)
    other_event = best_of(lambda: recorder.audit("sys._getframe", ())) - best_of(lambda: None)
    open_close = best_of(lambda: open(outside, "rb").close(), number=20_000)
    inside = tmp_path / "data" / "read.csv"
    inside.write_text("1,2\n")
    inside_args = (str(inside), "r", os.O_RDONLY | os.O_CLOEXEC)
    first = time.perf_counter()
    recorder.audit("open", inside_args)
    first = time.perf_counter() - first
    again = best_of(lambda: recorder.audit("open", inside_args)) - best_of(lambda: None)
    print(
        f"\nper open outside the mounts: hook {hook * 1e6:.2f} µs, open+close "
        f"{open_close * 1e6:.2f} µs ({hook / open_close:.0%}); other audit events "
        f"{other_event * 1e6:.2f} µs; a file in a mount: first open {first * 1e6:.1f} µs, "
        f"again {again * 1e6:.2f} µs"
    )
    assert [f["relative_path"] for f in recorder.record()["files"]] == ["read.csv"]
    assert hook < 1.5e-6, f"the hook costs {hook * 1e6:.2f} µs per open outside the mounts"
