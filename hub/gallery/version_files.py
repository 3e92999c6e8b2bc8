"""A version's files on disk: ``<state_dir>/gallery/<entry>/v<N>/`` (folders 0700, files
0600, root's), the notebook as ``notebook.ipynb`` and the files beside it below ``files/``.

Only the service writes here, from the bytes of a publish request, never from a user's
home. Names were checked (``file_names``) and every component is opened without following
links, relative to the folder above it, so nothing here can be steered outside the tree.
A version is written into ``v<N>.partial`` and renamed into place once complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .publish_request import Publication

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
CHUNK = 1 << 20


def gallery_root(state_dir: Path) -> Path:
    return Path(state_dir) / "gallery"


def make_root(state_dir: Path) -> Path:
    root = gallery_root(state_dir)
    root.mkdir(mode=0o700, exist_ok=True)
    if root.is_symlink() or not root.is_dir():
        raise RuntimeError(f"{root} must be a folder of the gallery service, not a link")
    os.chmod(root, 0o700)
    return root


def _open_folder(parent_fd: int, name: str, create: bool) -> int:
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
    return os.open(name, DIRECTORY, dir_fd=parent_fd)


def _open_path(root: Path, parts: list[str], create: bool = False) -> int:
    """A descriptor of the folder ``root/parts...``, no link followed on the way."""
    fd = os.open(root, DIRECTORY)
    try:
        for part in parts:
            next_fd = _open_folder(fd, part, create)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write(folder_fd: int, name: str, data: bytes) -> None:
    *folders, base = name.split("/")
    fd = os.dup(folder_fd)
    try:
        for part in folders:
            next_fd = _open_folder(fd, part, create=True)
            os.close(fd)
            fd = next_fd
        out = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        with os.fdopen(out, "wb") as handle:
            handle.write(data)
    finally:
        os.close(fd)


def write_version(root: Path, entry_id: int, number: int, publication: Publication) -> None:
    """Write a version's notebook and files, then rename its folder into place. Blocking."""
    entry_fd = _open_path(root, [str(entry_id)], create=True)
    partial, final = f"v{number}.partial", f"v{number}"
    try:
        if _exists(entry_fd, partial):  # left by a publish that a restart interrupted
            shutil.rmtree(partial, dir_fd=entry_fd)
        os.mkdir(partial, 0o700, dir_fd=entry_fd)
        folder_fd = os.open(partial, DIRECTORY, dir_fd=entry_fd)
        try:
            _write(folder_fd, "notebook.ipynb", publication.notebook)
            if publication.files:
                os.mkdir("files", 0o700, dir_fd=folder_fd)
                files_fd = os.open("files", DIRECTORY, dir_fd=folder_fd)
                try:
                    for name, data in publication.files.items():
                        _write(files_fd, name, data)
                finally:
                    os.close(files_fd)
        finally:
            os.close(folder_fd)
        os.rename(partial, final, src_dir_fd=entry_fd, dst_dir_fd=entry_fd)
    finally:
        os.close(entry_fd)


def remove_version(root: Path, entry_id: int, number: int) -> None:
    """Undo ``write_version`` (the database refused the version). Blocking."""
    entry_fd = _open_path(root, [str(entry_id)])
    try:
        shutil.rmtree(f"v{number}", dir_fd=entry_fd)
    finally:
        os.close(entry_fd)


def _exists(folder_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def open_file(root: Path, entry_id: int, number: int, name: str | None) -> int:
    """A read descriptor of the version's notebook (``name`` None) or of file ``name``, which
    the caller took from the version's manifest. Blocking."""
    parts = [str(entry_id), f"v{number}"]
    if name is None:
        *folders, base = parts + ["notebook.ipynb"]
    else:
        *folders, base = parts + ["files", *name.split("/")]
    fd = _open_path(root, folders)
    try:
        return os.open(base, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def read_all(fd: int) -> bytes:
    """The whole file behind ``fd`` (closed after). Blocking."""
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def chunks(fd: int) -> Iterator[bytes]:
    """The file behind ``fd`` in chunks; each ``next`` blocks (call it in a thread)."""
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
