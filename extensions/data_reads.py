"""Record which files under the site's data mounts a kernel reads: "the data it read".

An IPython extension, loaded in every IPython kernel of a KioskHub server (the server's
``data_reads_server`` extension adds ``--IPKernelApp.extra_extensions`` to the command
of each ipykernel kernel). It installs a ``sys.addaudithook`` hook on the ``open``
audit event, which ``open``, ``io.open``, ``pathlib`` and ``os.open`` all raise, and
notes each regular file opened for reading whose real path (links resolved) lies in a
data mount: its real path, the mount's name, and its size and modification time at
the first open. A file opened again is not noted again.

The mounts come from ``KIOSKHUB_DATA_MOUNTS``, set by the spawner: JSON, a list of
``{"name": ..., "paths": [...]}`` giving every folder where the server sees each mount.

The record is a JSON file beside the kernel's connection file, in the server's runtime
folder: ``kernel-<kernel id>.data-reads.json``, written as the user (the kernel runs as
the user), debounced, and at the end of every cell. A (re)started kernel starts a new,
empty record: it describes the kernel's last run only.

Opens made by compiled libraries that call the C library directly (HDF5 through h5py,
netCDF-C, ROOT) raise no audit event and are not recorded.
"""

from __future__ import annotations

import atexit
import json
import os
import stat
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MOUNTS_ENV = "KIOSKHUB_DATA_MOUNTS"
RECORD_SUFFIX = ".data-reads.json"
RECORD_VERSION = 1
WRITE_DELAY_S = 0.5
"""Reads closer together than this are written to the record in one go."""
MAX_FILES = 100_000
"""A kernel that opens more files than this under the mounts records the first ones only."""
MAX_CACHED_FOLDERS = 4096


@dataclass(frozen=True)
class DataMount:
    """One data mount: its name and the folders where the server sees it."""

    name: str
    paths: tuple[str, ...]

    def as_json(self) -> dict:
        return {"name": self.name, "paths": list(self.paths)}


def parse_mounts(text: str | None) -> list[DataMount]:
    """The mounts named in ``KIOSKHUB_DATA_MOUNTS``; anything unusable is left out."""
    try:
        entries = json.loads(text or "[]")
    except ValueError:
        return []
    mounts = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        paths = entry.get("paths")
        paths = (
            tuple(p for p in paths if isinstance(p, str) and p.startswith("/"))
            if isinstance(paths, list)
            else ()
        )
        if paths:
            mounts.append(DataMount(entry["name"], paths))
    return mounts


def mount_roots(mounts: list[DataMount]) -> list[tuple[str, str]]:
    """(real folder, mount name) for each folder of each mount, links resolved, longest first."""
    roots = {os.path.realpath(path): mount.name for mount in mounts for path in mount.paths}
    return sorted(roots.items(), key=lambda root: -len(root[0]))


def mount_of(real_path: str, roots: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(mount name, path inside it) of a resolved path strictly inside a mount, or None."""
    for root, name in roots:
        if real_path.startswith(root) and real_path[len(root) : len(root) + 1] == "/":
            return name, real_path[len(root) + 1 :]
        if root == "/" and real_path != "/":
            return name, real_path[1:]
    return None


def record_path(connection_file: str | os.PathLike) -> Path:
    """Where a kernel's record lives: beside its connection file, named by the kernel id."""
    connection = Path(connection_file)
    return connection.with_name(connection.stem + RECORD_SUFFIX)


class DataReadRecorder:
    """The files under the mounts that this process opened for reading, and their record.

    ``audit`` is the audit hook. An open for reading counts (``os.open`` flags: not
    write-only, not truncating). Opens outside the mounts cost an event-name comparison,
    a flag test and one dictionary look-up: each folder is resolved (``realpath``) once
    and remembered. Only files whose folder lies in a mount are resolved and stat'ed.
    """

    def __init__(self, mounts: list[DataMount], record_file: Path) -> None:
        self.mounts = mounts
        self.record_file = record_file
        self.started = time.time()
        self._roots = mount_roots(mounts)
        self._folders: dict[str, bool] = {}
        self._files: dict[tuple[int, int], dict] = {}
        self._seen: set[str] = set()
        self._changed = threading.Event()
        self._write_lock = threading.Lock()
        self._writer: threading.Thread | None = None

    def audit(
        self,
        event: str,
        args: tuple,
        _not_read: int = os.O_TRUNC,
        _access: int = os.O_ACCMODE,
        _write_only: int = os.O_WRONLY,
    ) -> None:
        """The ``sys.addaudithook`` hook: note reads of regular files under the mounts.

        The constants are default arguments because locals are the fastest look-ups.
        """
        if event != "open":
            return
        try:
            path, _mode, flags = args
            if flags & _not_read or flags & _access == _write_only:
                return
            if type(path) is not str:
                if type(path) is not bytes:
                    return  # a file descriptor
                path = os.fsdecode(path)
            folder, _, name = path.rpartition("/")
            if path[:1] != "/":
                folder = os.path.join(os.getcwd(), folder)
            in_mount = self._folders.get(folder)
            if in_mount is None:
                in_mount = self._folder_in_mount(folder)
            if in_mount:
                self._note(os.path.join(folder, name))
        except Exception:  # an exception here would fail the user's open()
            return

    def _folder_in_mount(self, folder: str) -> bool:
        real = os.path.realpath(folder or "/")
        in_mount = (
            real in (root for root, _ in self._roots) or mount_of(real, self._roots) is not None
        )
        if len(self._folders) >= MAX_CACHED_FOLDERS:
            self._folders.clear()
        self._folders[folder] = in_mount
        return in_mount

    def _note(self, path: str) -> None:
        """Note one file whose folder lies in a mount, by its real path, if it lies in one.

        A file seen again under another path (the same mount bound at two places, a hard
        link) is noted once, by its (device, inode).
        """
        if path in self._seen or len(self._seen) >= MAX_FILES:
            return  # opened again by the same path: no need to resolve it again
        real = os.path.realpath(path)
        if real in self._seen:
            self._seen.add(path)
            return
        place = mount_of(real, self._roots)
        if place is None:
            return  # a link under a mount to a file outside every mount
        status = os.stat(real)
        if not stat.S_ISREG(status.st_mode):
            return
        self._seen.update((path, real))
        self._files.setdefault(
            (status.st_dev, status.st_ino),
            {
                "path": real,
                "mount": place[0],
                "relative_path": place[1],
                "size": status.st_size,
                "mtime_ns": status.st_mtime_ns,
            },
        )
        self._changed.set()

    # --- the record file ------------------------------------------------------------------

    def record(self) -> dict:
        """The record as written: this kernel's start, the mounts and the files read."""
        return {
            "version": RECORD_VERSION,
            "kernel_pid": os.getpid(),
            "started": self.started,
            "mounts": [mount.as_json() for mount in self.mounts],
            "files": list(self._files.values()),
        }

    def write(self) -> None:
        """Replace the record file with the current record (atomically, mode 0600)."""
        with self._write_lock:
            self._changed.clear()
            folder = self.record_file.parent
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=".data-reads-", suffix=".tmp")
            try:
                with os.fdopen(handle, "w") as out:
                    json.dump(self.record(), out)
                os.replace(temporary, self.record_file)
            except BaseException:
                os.unlink(temporary)
                raise

    def flush(self, *_ignored) -> None:
        """Write the record now if files were noted since the last write."""
        if self._changed.is_set():
            self.write()

    def start_writer(self) -> None:
        """Write the record, debounced, from a daemon thread, while cells still run."""
        self._writer = threading.Thread(target=self._write_loop, name="data-reads", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        while True:
            self._changed.wait()
            time.sleep(WRITE_DELAY_S)
            try:
                self.flush()
            except OSError as error:
                print(
                    f"kioskhub data reads: cannot write {self.record_file}: {error}",
                    file=sys.stderr,
                )
                time.sleep(30)


# --- IPython extension --------------------------------------------------------------------

_recorder: DataReadRecorder | None = None


def kernel_connection_file() -> str | None:
    """This kernel's connection file, or None outside an IPython kernel."""
    try:
        from ipykernel.connect import get_connection_file

        return get_connection_file()
    except Exception:
        return None


def load_ipython_extension(ipython) -> None:
    """Start recording the reads under the data mounts of this kernel (once per process)."""
    global _recorder
    if _recorder is not None:
        return
    mounts = parse_mounts(os.environ.get(MOUNTS_ENV))
    connection_file = kernel_connection_file()
    if not mounts or connection_file is None:
        return  # no data mounts, or not a kernel: nothing to record
    recorder = DataReadRecorder(mounts, record_path(os.path.abspath(connection_file)))
    try:
        recorder.write()  # replaces the record of the kernel's previous run
    except OSError as error:
        print(
            f"kioskhub data reads: not recording, cannot write {recorder.record_file}: {error}",
            file=sys.stderr,
        )
        return
    _recorder = recorder
    sys.addaudithook(recorder.audit)
    recorder.start_writer()
    ipython.events.register("post_run_cell", recorder.flush)
    atexit.register(recorder.flush)
