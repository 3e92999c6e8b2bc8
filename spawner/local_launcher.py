"""Runs as root between the hub and a user's server: private mounts, cgroups, account, exec.

Usage: ``python -m kioskhub.spawner.local_launcher PLAN_JSON -- COMMAND...`` (see
``LocalLaunch.launcher_argv``). Every step fails loudly: a server that cannot be
isolated as planned does not start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

CLONE_NEWNS = 0x00020000
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


def private_mounts(binds: list[dict]) -> None:
    """Enter a private mount namespace and bind each source onto its target."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare the mount namespace")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    for bind in binds:
        os.makedirs(bind["target"], exist_ok=True)
        _mount(bind["source"], bind["target"], MS_BIND | MS_REC)
        if bind["read_only"]:
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
            _mount(None, bind["target"], flags)


def enter_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        with open(path, "w") as handle:
            handle.write(str(os.getpid()))


def become(user: str, uid: int, gid: int) -> None:
    os.setgroups([])
    os.initgroups(user, gid)
    os.setgid(gid)
    os.setuid(uid)


def main(argv: list[str]) -> None:
    plan = json.loads(argv[1])
    command = argv[argv.index("--") + 1 :]
    if plan["binds"]:
        private_mounts(plan["binds"])
    enter_cgroups(plan["cgroup_procs"])
    if plan["uid"] is not None:
        become(plan["user"], plan["uid"], plan["gid"])
    os.chdir(plan["home"])
    os.execvpe(command[0], command, os.environ)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except OSError as error:
        print(f"kioskhub launcher: cannot start the server: {error}", file=sys.stderr)
        sys.exit(70)
