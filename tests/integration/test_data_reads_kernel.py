"""A real IPython kernel, started by the servers' kernel manager, records the data it reads.

``RecordingKernelManager`` (the class ``data_reads_server`` gives the server) starts
ipykernel with the recorder; the kernel reads files inside a stand-in data mount (a
tmp folder) and outside it, by every way Python opens files. Its record must list
exactly the files read in the mount, once each, with their size and modification time;
a restart starts a new, empty record.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from kioskhub.extensions.data_reads import RECORD_SUFFIX
from kioskhub.extensions.data_reads_server import RecordingKernelManager

pytestmark = pytest.mark.integration

READS = """
import io, os, pathlib
data, outside = {data!r}, {outside!r}
open(data + "/a.csv").read()
open(data + "/a.csv", "rb").read()                 # again: recorded once
open(data + "/hard.csv").read()                    # a hard link to it: the same file
pathlib.Path(data, "sub", "b.txt").read_text()
os.close(os.open(data + "/c.bin", os.O_RDONLY))
io.open(data + "/d.txt", "r+").close()
open(outside + "/e.txt").read()                    # outside the mount
open(data + "/written.txt", "w").write("new")      # written, not read
open(data + "/link-out.txt").read()                # a link in the mount to a file outside
open(data + "/link-in.txt").read()                 # a link in the mount to a file in it
open(outside + "/data-link/sub/f.txt").read()      # a folder outside linked into the mount
os.chdir(data); open("sub/g.txt").read()           # relative to the working folder
try:
    open(data + "/missing.txt")
except FileNotFoundError:
    pass
print("done")
"""


def make_tree(tmp_path: Path) -> tuple[Path, Path]:
    data, outside = tmp_path / "mount", tmp_path / "outside"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    for name, text in {
        "a.csv": "x,y\n1,2\n",
        "sub/b.txt": "bee",
        "c.bin": "\0" * 300,
        "d.txt": "dee",
        "sub/f.txt": "eff!",
        "sub/g.txt": "gee gee",
        "target.txt": "in the mount",
    }.items():
        (data / name).write_text(text)
    (outside / "e.txt").write_text("outside")
    os.link(data / "a.csv", data / "hard.csv")
    (data / "link-out.txt").symlink_to(outside / "e.txt")
    (data / "link-in.txt").symlink_to(data / "target.txt")
    (outside / "data-link").symlink_to(data)
    return data, outside


def expected(data: Path, names: list[str]) -> list[dict]:
    entries = []
    for name in names:
        status = (data / name).stat()
        entries.append(
            {
                "path": str(data / name),
                "mount": "beamtime",
                "relative_path": name,
                "size": status.st_size,
                "mtime_ns": status.st_mtime_ns,
            }
        )
    return sorted(entries, key=lambda e: e["path"])


async def run_cell(manager: RecordingKernelManager, code: str) -> str:
    """Execute ``code`` in the kernel; its stdout (fails the test on an error)."""
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(code, timeout=60, output_hook=_collect(out := []))
    finally:
        client.stop_channels()
    if reply["content"]["status"] != "ok":
        pytest.fail(f"the cell failed: {reply['content']}\n{''.join(out)}")
    return "".join(out)


def _collect(out: list[str]):
    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    return hook


def read_record(manager: RecordingKernelManager) -> dict:
    connection = Path(manager.connection_file)
    return json.loads((connection.parent / (connection.stem + RECORD_SUFFIX)).read_text())


def test_the_kernel_records_exactly_the_files_it_read_in_the_mount(tmp_path, monkeypatch):
    data, outside = make_tree(tmp_path)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    mounts = [{"name": "beamtime", "paths": [str(data)]}]
    env = {**os.environ, "KIOSKHUB_DATA_MOUNTS": json.dumps(mounts)}

    async def scenario():
        manager = RecordingKernelManager(
            kernel_name="python3", connection_file=str(runtime / "kernel-k1.json")
        )
        assert "--IPKernelApp.extra_extensions=kioskhub.extensions.data_reads" in (
            manager.format_kernel_cmd()
        )
        await manager.start_kernel(env=env, cwd=str(tmp_path))
        try:
            assert "done" in await run_cell(
                manager, READS.format(data=str(data), outside=str(outside))
            )
            first = read_record(manager)
            await manager.restart_kernel(now=True)
            await run_cell(manager, "print('restarted')")
            after_restart = read_record(manager)
            await run_cell(manager, f"open({str(data / 'sub' / 'b.txt')!r}).read()")
            second = read_record(manager)
        finally:
            await manager.shutdown_kernel(now=True)
        return first, after_restart, second, manager

    first, after_restart, second, manager = asyncio.run(scenario())

    assert sorted(first["files"], key=lambda e: e["path"]) == expected(
        data, ["a.csv", "c.bin", "d.txt", "sub/b.txt", "sub/f.txt", "sub/g.txt", "target.txt"]
    )
    assert first["mounts"] == mounts
    assert after_restart["files"] == []
    assert after_restart["kernel_pid"] != first["kernel_pid"]
    assert second["files"] == expected(data, ["sub/b.txt"])
    # The record goes with the kernel, and no temporary file is left beside it.
    assert sorted(p.name for p in runtime.iterdir()) == []
    assert not Path(manager.connection_file).exists()


def test_a_kernel_without_mounts_keeps_no_record(tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("KIOSKHUB_DATA_MOUNTS", raising=False)

    async def scenario():
        manager = RecordingKernelManager(
            kernel_name="python3", connection_file=str(runtime / "kernel-k2.json")
        )
        await manager.start_kernel(cwd=str(tmp_path))
        try:
            await run_cell(manager, "open(__import__('os').devnull).read()")
            return sorted(p.name for p in runtime.iterdir())
        finally:
            await manager.shutdown_kernel(now=True)

    assert asyncio.run(scenario()) == ["kernel-k2.json"]
