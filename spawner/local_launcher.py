"""Runs as root between the hub and a user's server: private mounts, cgroups, account, exec.

Usage: ``python -m kioskhub.spawner.local_launcher PLAN_JSON -- COMMAND...`` (see
``LocalLaunch.launcher_argv``). Every step fails loudly: a server that cannot be
isolated as planned does not start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import stat
import sys
from pathlib import Path

from . import root_paths

CLONE_NEWNS = 0x00020000
PR_SET_NO_NEW_PRIVS = 38
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(
        _libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
        f"mount {source or ''} on {target}",
    )


def private_mounts(binds: list[dict], home: str, uid: int) -> None:
    """Enter a private mount namespace and bind each source onto its target.

    Targets in the user's home are opened through ``root_paths`` (no symlinks, owned
    by the user) and mounted on through their descriptor; other targets are paths of
    the site's config.
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare the mount namespace")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    home_fd = None
    for bind in binds:
        if bind.get("private"):
            check_private_source(bind["source"])
        if os.path.dirname(bind["target"]) != home:
            os.makedirs(bind["target"], exist_ok=True)
            _bind(bind, bind["target"])
            continue
        if home_fd is None:
            home_fd = _open_home(home, uid)
        name = os.path.basename(bind["target"])
        target = root_paths.open_beneath(home_fd, name)
        try:
            root_paths.check_owner(target, uid, f"the mount point {bind['target']}")
            _mount(bind["source"], root_paths.proc_fd_path(target), MS_BIND | MS_REC)
        finally:
            os.close(target)
        if bind["read_only"]:
            mounted = root_paths.open_beneath(home_fd, name)
            try:
                _check_is_mount_of(mounted, bind["source"], bind["target"])
                _bind_read_only(root_paths.proc_fd_path(mounted))
            finally:
                os.close(mounted)


def _bind(bind: dict, target: str) -> None:
    _mount(bind["source"], target, MS_BIND | MS_REC)
    if bind["read_only"]:
        _bind_read_only(target)


def _bind_read_only(target: str) -> None:
    _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _open_home(home: str, uid: int) -> int:
    parent = root_paths.open_trusted_folder(os.path.dirname(home))
    try:
        fd = root_paths.open_beneath(parent, os.path.basename(home))
    finally:
        os.close(parent)
    root_paths.check_owner(fd, uid, f"the home folder {home}")
    return fd


def _check_is_mount_of(fd: int, source: str, target: str) -> None:
    """The folder opened after mounting must be the source's root, not a swapped one."""
    mounted, expected = os.fstat(fd), os.stat(source)
    if (mounted.st_dev, mounted.st_ino) != (expected.st_dev, expected.st_ino):
        raise root_paths.UnsafePathError(
            errno.EBUSY, f"{target} changed while {source} was mounted"
        )


def check_private_source(source: str) -> None:
    """A group-restricted mount's source must sit below a folder closed to other accounts.

    The server reaches the data through the bind mount made here as root, so the host
    path can stay closed: a root-owned folder above the source without ``o+x``.
    """
    for folder in Path(source).resolve().parents:
        info = os.stat(folder)
        if info.st_uid == 0 and not info.st_mode & stat.S_IXOTH:
            return
    raise root_paths.UnsafePathError(
        errno.EPERM,
        f"the group-restricted data source {source} is reachable by every account on "
        "this machine; move it into a folder only root may enter (for example "
        "`install -d -m 0700 /srv/restricted` and the source below it)",
    )


def enter_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        with open(path, "w") as handle:
            handle.write(str(os.getpid()))


def become(initgroups: str | None, uid: int, gid: int, groups: list[int]) -> None:
    """Drop to the account for good: the name service's groups of ``initgroups`` (a kh-
    account; None for a lab identity, whose groups are all in ``groups``) and ``groups``,
    then gid, uid, and no setuid gains after."""
    os.setgroups([])
    if initgroups is not None:
        os.initgroups(initgroups, gid)
    if groups:
        os.setgroups([*os.getgroups(), *groups])
    os.setgid(gid)
    os.setuid(uid)
    forbid_new_privileges()


def forbid_new_privileges() -> None:
    """No exec from here on gains privileges (setuid binaries, file capabilities)."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def main(argv: list[str]) -> None:
    plan = json.loads(argv[1])
    command = argv[argv.index("--") + 1 :]
    if plan["binds"]:
        private_mounts(plan["binds"], plan["home"], plan["uid"])
    enter_cgroups(plan["cgroup_procs"])
    if plan["uid"] is not None:
        become(plan["initgroups"], plan["uid"], plan["gid"], plan["groups"])
    os.chdir(plan["home"])
    os.execvpe(command[0], command, os.environ)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except OSError as error:
        print(
            f"kioskhub launcher: cannot start the server: {root_paths.describe(error)}",
            file=sys.stderr,
        )
        sys.exit(70)
