"""Reading a checkout's files as data: never through a link that leaves it, never a FIFO.

The service reads a repository's spec files itself. Each path is walked one component at a
time from a descriptor of the checkout's folder, with ``O_NOFOLLOW``: a link is followed
only by reading it and walking its target from where it stands, so a link that points
outside the checkout (absolute, or through ``..``) is refused, as are FIFOs, devices,
sockets and files larger than ``MAX_SPEC_BYTES``. Every refusal names the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .builder_base import BuildFailed

MAX_SPEC_BYTES = 1024 * 1024
MAX_LINK_HOPS = 16


class UnsafeRepositoryFile(BuildFailed):
    """A spec file the builder will not read; the message names it and says why."""


class CheckoutFiles:
    """The files of the checkout at ``root``, read without leaving it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def kind(self, relative: str) -> str | None:
        """'file', 'folder' or 'other' for ``relative`` (links resolved inside), None if absent."""
        try:
            fd, name = self._parent(relative)
        except FileNotFoundError:
            return None
        try:
            if name is None:
                return "folder"
            try:
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                return None
            if stat.S_ISREG(mode):
                return "file"
            return "folder" if stat.S_ISDIR(mode) else "other"
        finally:
            os.close(fd)

    def read(self, relative: str, limit: int = MAX_SPEC_BYTES) -> bytes:
        """The bytes of the regular file ``relative``; UnsafeRepositoryFile otherwise."""
        fd, name = self._parent(relative)
        try:
            if name is None:
                raise UnsafeRepositoryFile(f"{relative} is a folder, not a file")
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
            try:
                file = os.open(name, flags, dir_fd=fd)
            except OSError as error:
                raise UnsafeRepositoryFile(
                    f"{relative} could not be read ({error.strerror})"
                ) from None
        finally:
            os.close(fd)
        try:
            status = os.fstat(file)
            if stat.S_ISDIR(status.st_mode):
                raise UnsafeRepositoryFile(f"{relative} is a folder, not a file")
            if not stat.S_ISREG(status.st_mode):
                raise UnsafeRepositoryFile(
                    f"{relative} is not a regular file (a FIFO, device or socket); "
                    "commit it as a plain file"
                )
            if status.st_size > limit:
                raise UnsafeRepositoryFile(
                    f"{relative} is larger than {limit // 1024} KiB; spec files must be small"
                )
            data = os.read(file, limit + 1)
            if len(data) > limit:
                raise UnsafeRepositoryFile(f"{relative} is larger than {limit // 1024} KiB")
            return data
        finally:
            os.close(file)

    def _parent(self, relative: str) -> tuple[int, str | None]:
        """A descriptor of the folder holding ``relative``'s last part, and that part.

        Links on the way (the last part's too) are resolved inside the checkout; ``None`` as
        the part means ``relative`` is the checkout's top folder itself.
        """
        pending = [part for part in relative.split("/") if part not in ("", ".")]
        folders = [os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)]
        hops = 0
        try:
            while pending:
                part = pending.pop(0)
                if part == "..":
                    if len(folders) == 1:
                        raise UnsafeRepositoryFile(f"{relative} points outside the repository")
                    os.close(folders.pop())
                    continue
                try:
                    mode = os.stat(part, dir_fd=folders[-1], follow_symlinks=False).st_mode
                except FileNotFoundError:
                    if pending:
                        raise
                    return folders.pop(), part
                except NotADirectoryError:
                    raise FileNotFoundError(part) from None
                if stat.S_ISLNK(mode):
                    hops += 1
                    target = os.readlink(part, dir_fd=folders[-1])
                    if target.startswith("/") or hops > MAX_LINK_HOPS:
                        raise UnsafeRepositoryFile(
                            f"{relative} is a symbolic link that points outside the "
                            "repository; commit the file itself"
                        )
                    pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                    continue
                if not pending:
                    return folders.pop(), part
                if not stat.S_ISDIR(mode):
                    raise FileNotFoundError(part)
                folders.append(
                    os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folders[-1])
                )
            return folders.pop(), None
        finally:
            for fd in folders:
                os.close(fd)
