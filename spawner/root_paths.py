"""The one place where root touches paths inside folders that users can write.

Everything else that root does in a user's tree is done by a child process that has
become the user (``home.py``), so that the kernel checks each access. What root must do
itself (create and hand over a new home folder, mount data onto a folder in a home)
goes through these functions, which:

- open each path component relative to a trusted folder's descriptor and follow no
  symlink (``openat2`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``, or a walk with
  ``O_NOFOLLOW`` and one descriptor per folder where ``openat2`` is missing);
- check the owner of what they opened, and then act on that descriptor (``fchown``,
  ``fchmod``, a mount through ``/proc/self/fd``), so nothing can be swapped between
  the check and the use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
from typing import NamedTuple

SYS_OPENAT2 = 437
"""The syscall number of openat2 (the same on x86_64 and aarch64; Linux 5.6+)."""

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


class UnsafePathError(OSError):
    """A path below a trusted folder is a symlink, escapes it, or has the wrong owner."""


class Owner(NamedTuple):
    uid: int
    gid: int


_openat2_works: bool | None = None


def open_beneath(dir_fd: int, relative: str, flags: int = os.O_PATH | os.O_DIRECTORY) -> int:
    """Open ``relative`` below the folder ``dir_fd`` without following any symlink.

    Raises UnsafePathError when a component is a symlink or ``..``, FileNotFoundError
    when one is missing. The caller closes the returned descriptor.
    """
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts or relative.startswith("/"):
        raise UnsafePathError(errno.EINVAL, f"not a plain relative path: {relative!r}")
    global _openat2_works
    if _openat2_works is not False:
        try:
            fd = _openat2(dir_fd, "/".join(parts), flags | os.O_CLOEXEC)
            _openat2_works = True
            return fd
        except OSError as error:
            if error.errno not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
                raise _explained(error, relative) from None
            _openat2_works = False
    return _walk_beneath(dir_fd, parts, flags, relative)


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    how = _OpenHow(
        flags=flags,
        mode=0,
        resolve=RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    )
    fd = _libc.syscall(
        ctypes.c_long(SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def _walk_beneath(dir_fd: int, parts: list[str], flags: int, relative: str) -> int:
    """The fallback: one ``O_NOFOLLOW`` open per component, each relative to the last."""
    current = dir_fd
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            step = flags if last else os.O_PATH | os.O_DIRECTORY
            try:
                fd = os.open(part, step | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            except OSError as error:
                raise _explained(error, relative) from None
            if current != dir_fd:
                os.close(current)
            current = fd
        return current
    except BaseException:
        if current != dir_fd:
            os.close(current)
        raise


def _explained(error: OSError, relative: str) -> OSError:
    if error.errno in (errno.ELOOP, errno.EXDEV):
        return UnsafePathError(
            error.errno, f"{relative!r} is or passes through a symbolic link; refused"
        )
    if error.errno == errno.ENOTDIR:
        return UnsafePathError(
            error.errno, f"{relative!r} is not a folder, or is a symbolic link; refused"
        )
    return type(error)(error.errno, error.strerror, relative)


def open_trusted_folder(path: str) -> int:
    """Open a folder the site's config names (a homes root); it must be root's alone.

    Refused unless owned by root (or the hub's own account) and closed to writes by
    others, since a folder others may write is no anchor for the checks below it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    info = os.fstat(fd)
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o022:
        os.close(fd)
        raise UnsafePathError(
            errno.EPERM,
            f"{path} must belong to root and be writable by root alone "
            f"(it is uid {info.st_uid}, mode {stat.filemode(info.st_mode)}): "
            f"run `chown root: {path} && chmod go-w {path}`",
        )
    return fd


def check_owner(fd: int, uid: int, what: str) -> os.stat_result:
    """``fstat`` of ``fd``, which must be a folder owned by ``uid``."""
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(errno.ENOTDIR, f"{what} is not a folder")
    if info.st_uid != uid:
        raise UnsafePathError(
            errno.EPERM, f"{what} belongs to uid {info.st_uid}, not to uid {uid}; refused"
        )
    return info


def hand_over_folder(parent_fd: int, name: str, owner: Owner, mode: int = 0o700) -> None:
    """Create folder ``name`` in ``parent_fd`` (if missing) and give it to ``owner``.

    An existing folder must already be the owner's (or root's, from an older KioskHub);
    a symlink or another account's folder is refused. The chown and chmod act on the
    descriptor that was checked. Nothing below the folder is touched.
    """
    try:
        os.mkdir(name, 0o700, dir_fd=parent_fd)
    except FileExistsError:
        pass
    fd = open_beneath(parent_fd, name, os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = os.fstat(fd)
        if info.st_uid not in (0, owner.uid):
            raise UnsafePathError(
                errno.EPERM,
                f"the folder {name!r} belongs to uid {info.st_uid}, not to uid {owner.uid}; "
                "refused to hand it over",
            )
        os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def proc_fd_path(fd: int) -> str:
    """A path naming exactly what ``fd`` refers to, for calls that take only paths (mount)."""
    return f"/proc/self/fd/{fd}"


def describe(error: OSError) -> str:
    """An OSError as a sentence without ``[Errno N]``, naming the file where known."""
    text = error.strerror or str(error)
    return f"{text}: {error.filename}" if error.filename else text
