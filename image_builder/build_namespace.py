"""What a build step's process may not keep or gain: shared temporary folders, privileges.

As root, in a step's child before it drops to the build identity (``BuildAccount.become``):

- ``private_temporary_folders`` unshares the mount namespace (and System V IPC), makes every
  mount private so nothing propagates back to the host, and mounts a fresh, size-capped
  tmpfs (nosuid, nodev) on ``/tmp``, ``/var/tmp`` and ``/dev/shm``. What a step writes there
  is gone when its last process ends: no file, setgid program or socket it leaves there
  reaches a later build or a user's server. The folders a step must still see below them
  (its work folder, the environments and cache folders, a local source repository) are
  bound back at their own paths, each only when it is the folder asked for (no link on the
  way) and the build could reach it anyway (every folder above it open to others);
- ``forbid_new_privileges`` (after the drop) sets no-new-privs: no program the step runs
  gains privileges from a setuid or setgid bit or file capabilities.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import stat
from collections.abc import Iterable

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
PR_SET_NO_NEW_PRIVS = 38
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

TEMPORARY_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")
TEMPORARY_OPTIONS = "size=1g,mode=1777"
"""Each step's fresh temporary folder: at most 1 GiB (its pages count in the build's memory
too), writable by all with the sticky bit, as the host's."""

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def private_temporary_folders(visible: Iterable[str], uid: int) -> None:
    """Give this process (root, about to become ``uid``) fresh temporary folders of its own.

    ``visible``: real paths the step needs that may lie below a temporary folder.
    """
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare the mount namespace")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    here = os.getcwd()
    for folder in dict.fromkeys(os.path.realpath(f) for f in TEMPORARY_FOLDERS):
        if not os.path.isdir(folder):
            continue
        kept = [
            (path, fd)
            for path in outermost_below(folder, visible)
            if reachable_by(path, folder, uid) and (fd := open_exactly(path)) is not None
        ]
        try:
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, TEMPORARY_OPTIONS)
            for path, fd in kept:
                _bind_back(fd, path)
        finally:
            for _, fd in kept:
                os.close(fd)
    os.chdir(here)


def forbid_new_privileges() -> None:
    """No exec from here on gains privileges (setuid, setgid, file capabilities)."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def outermost_below(folder: str, paths: Iterable[str]) -> list[str]:
    """The ``paths`` below ``folder``, less those inside another of them (bound with it)."""
    below = sorted({p.rstrip("/") for p in paths if p.startswith(folder.rstrip("/") + "/")})
    kept: list[str] = []
    for path in below:
        if not any(path.startswith(outer + "/") for outer in kept):
            kept.append(path)
    return kept


def reachable_by(path: str, folder: str, uid: int) -> bool:
    """True when every folder between ``folder`` and ``path`` lets ``uid`` pass (o+x or its own).

    A bind mount skips the folders above its target: bind only what the build reaches anyway.
    """
    parent = os.path.dirname(path)
    while parent != folder and parent.startswith(folder + "/"):
        try:
            status = os.lstat(parent)
        except OSError:
            return False
        passes = status.st_mode & stat.S_IXOTH or (
            status.st_uid == uid and status.st_mode & stat.S_IXUSR
        )
        if not stat.S_ISDIR(status.st_mode) or not passes:
            return False
        parent = os.path.dirname(parent)
    return True


def open_exactly(path: str) -> int | None:
    """``path`` (a folder or file) opened (O_PATH), or None when missing, a link, or reached
    through one."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    except OSError:
        return None
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind not in (stat.S_IFDIR, stat.S_IFREG) or os.readlink(f"/proc/self/fd/{fd}") != path:
        os.close(fd)
        return None
    return fd


def _bind_back(fd: int, path: str) -> None:
    """Bind the opened ``fd`` at ``path`` in the fresh tmpfs (only root has written there)."""
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.makedirs(path, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)


def _mount(source: str | None, target: str, kind: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            kind.encode() if kind else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source or ''} on {target}",
    )


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
