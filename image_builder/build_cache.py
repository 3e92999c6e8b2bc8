"""Download caches per owner: one build's cache is never another owner's.

uv's cache under ``builder.cache_dir`` has one folder per environment owner (named by a hash
of the owner's name). A build gets its owner's folder handed to its fresh identity; root
walks it without following links (no process of an earlier build is left to swap entries)
and removes what a build could have planted to reach other files: hard links and anything
that is not a file, folder or link. When the owner's folder is in use by another build, the
build gets an empty cache in its work folder instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from .build_sandbox import BuildAccount


def owner_cache_folder(cache_dir: Path, owner: str) -> Path:
    return cache_dir / hashlib.sha256(owner.encode()).hexdigest()[:24]


def hand_over_cache(folder: Path, account: BuildAccount) -> None:
    """Make ``folder`` (an owner's cache, made if missing) ``account``'s, and safe to give."""
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(parent, 0, 0)
        os.chmod(parent, 0o711)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        _hand_over_tree(top, account)
        if account.switches:
            os.fchown(top, account.uid, account.gid)
        os.fchmod(top, 0o700)
    finally:
        os.close(top)


def _hand_over_tree(top: int, account: BuildAccount) -> None:
    for _root, dirs, files, fd in os.fwalk(dir_fd=top, follow_symlinks=False):
        for name in [*dirs, *files]:
            status = os.stat(name, dir_fd=fd, follow_symlinks=False)
            kind = stat.S_IFMT(status.st_mode)
            if kind == stat.S_IFREG and status.st_nlink > 1 or kind not in _KEPT:
                os.unlink(name, dir_fd=fd)
            elif account.switches:
                os.chown(name, account.uid, account.gid, dir_fd=fd, follow_symlinks=False)


_KEPT = {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK}
