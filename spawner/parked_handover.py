"""The hand-over folder of a parked pod: where root leaves a start's token for that pod alone.

Each parked pod mounts, read-only, a folder of its own on the host,
``<hub.state_dir>/parked/<pod name>``: made by root, owned by root, mode 0755, inside
``parked/`` (0700, root's), so no user of the host can reach it and no pod can write it.
Only the pod under that name mounts it. The start's document is written as a new file
opened relative to the folder's descriptor with ``O_NOFOLLOW | O_EXCL`` (nothing already
there is followed or reused), then renamed into place, so the waiter reads it whole.
Every folder is opened without following symlinks: root never follows a path that a
user could have made.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .parked_pods import HANDOVER_FILE

PARKED_FOLDER = "parked"
OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


class HandoverError(RuntimeError):
    """The hand-over folder is not what root made: nothing is written there."""


def handover_folder(state_dir: Path, pod: str) -> Path:
    return state_dir / PARKED_FOLDER / pod


def make_handover_folder(state_dir: Path, pod: str) -> Path:
    """A fresh, empty hand-over folder for ``pod`` (an old one is removed first)."""
    parent = state_dir / PARKED_FOLDER
    _root_folder(parent, 0o700)
    folder = parent / pod
    remove_handover_folder(state_dir, pod)
    os.mkdir(folder, 0o755)
    _root_folder(folder, 0o755)
    return folder


def _root_folder(path: Path, mode: int) -> None:
    """``path`` as a real folder owned by root with ``mode`` (made if missing)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    fd = _open_folder(path)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _open_folder(path: Path) -> int:
    try:
        fd = os.open(path, OPEN_FOLDER)
    except OSError as error:
        raise HandoverError(f"{path} is not a folder root made: {error.strerror}") from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or not stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise HandoverError(f"{path} is not owned by the hub's account")
    return fd


def write_handover(folder: Path, document: bytes) -> None:
    """Put ``document`` in ``folder`` for its pod's waiter; refuses anything already there."""
    fd = _open_folder(folder)
    try:
        temporary = f".{HANDOVER_FILE}.new"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            out = os.open(temporary, flags, 0o444, dir_fd=fd)
        except OSError as error:
            raise HandoverError(f"cannot write in {folder}: {error.strerror}") from None
        try:
            os.write(out, document)
        finally:
            os.close(out)
        if os.path.lexists(folder / HANDOVER_FILE):
            os.unlink(temporary, dir_fd=fd)
            raise HandoverError(f"{folder / HANDOVER_FILE} is already there")
        os.rename(temporary, HANDOVER_FILE, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


def clear_handover(folder: Path) -> None:
    """Remove the start's document once its server answers (the server keeps its env)."""
    try:
        fd = _open_folder(folder)
    except HandoverError:
        return
    try:
        os.unlink(HANDOVER_FILE, dir_fd=fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def remove_handover_folder(state_dir: Path, pod: str) -> None:
    """Remove ``pod``'s hand-over folder (a symlink in its place is removed, not followed)."""
    folder = handover_folder(state_dir, pod)
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)
