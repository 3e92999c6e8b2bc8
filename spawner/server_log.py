"""Server logs with a size cap: a small writer process rotates them; the hub reads only the end.

A server's stdout and stderr go into a pipe. Its other end is read by a writer process
(``python -I -m kioskhub.spawner.server_log PATH MAX_BYTES``) that the hub starts in a
session of its own, so it outlives a hub restart as the server does. The writer keeps
``PATH`` under ``MAX_BYTES`` by moving it to ``PATH.1`` (replacing the older one), so a
server that prints without end holds at most twice the cap on disk. Logs live in the
hub's state folder (root's alone), never in a folder a user can write. ``tail`` reads at
most ``TAIL_MAX_BYTES`` from the end of the file.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

LOG_MAX_BYTES = 8 * 2**20
"""Size of a server's log before it is rotated (one older file is kept)."""

TAIL_MAX_BYTES = 64 * 2**10
"""The most ``tail`` reads, whatever the length of the lines."""

CHUNK = 64 * 2**10


def open_capped_log(path: Path, max_bytes: int = LOG_MAX_BYTES) -> BinaryIO:
    """Start the writer for ``path``; returns the pipe end to give the server as stdout.

    The caller closes its copy once the server has started.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    read_end, write_end = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-I", "-m", "kioskhub.spawner.server_log", str(path), str(max_bytes)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return os.fdopen(write_end, "wb")


def tail(path: Path, lines: int, max_bytes: int = TAIL_MAX_BYTES) -> str:
    """The last ``lines`` lines of ``path``, reading at most ``max_bytes`` from its end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "(no log)"
    with os.fdopen(fd, "rb") as log:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "(no log)"
        size = info.st_size
        log.seek(max(size - max_bytes, 0))
        data = log.read(max_bytes)
    text = data.decode(errors="replace")
    if size > max_bytes:
        text = text.partition("\n")[2]
    return "\n".join(text.splitlines()[-lines:])


def _open_for_append(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


def copy_capped(source: int, path: Path, max_bytes: int) -> None:
    """Copy ``source`` into ``path`` until EOF, rotating to ``path.1`` past ``max_bytes``."""
    rotated = path.with_name(path.name + ".1")
    out = _open_for_append(path)
    os.ftruncate(out, 0)
    written = 0
    try:
        while chunk := os.read(source, min(CHUNK, max_bytes)):
            if written + len(chunk) > max_bytes and written:
                os.close(out)
                os.replace(path, rotated)
                out = _open_for_append(path)
                written = 0
            os.write(out, chunk)
            written += len(chunk)
    finally:
        os.close(out)


if __name__ == "__main__":
    copy_capped(sys.stdin.fileno(), Path(sys.argv[1]), int(sys.argv[2]))
