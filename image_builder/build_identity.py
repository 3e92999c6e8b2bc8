"""A fresh unprivileged identity for each build, and its end: nothing of it outlives the build.

When the service runs as root, every build (and every server layer preparation) takes a uid
of its own from the range the site reserves (``builder.build_uid_first`` and
``build_uid_count``), with the same number as its gid, no supplementary groups and no passwd
entry, and a cgroup of its own with the site's limits. No other build runs as that uid at the
same time, a uid still owning a process is never handed out, and neither is one that a
built venv uses as its group. When the build ends, every process in its cgroup is killed and
the group removed. Without root, builds run as the service's own account, with neither.

The pool also hands out environment groups: each venv built for a user gets a gid of its own
from ``builder.environment_gid_first`` / ``environment_gid_count`` (``choose_gid``), never one
that another venv or a build uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from kioskhub.hub.schema.builder import BuilderSettings, environment_gids

from .build_cgroup import BuildLimits, CgroupUnavailable, create_build_cgroup
from .build_sandbox import BuildAccount
from .builder_base import BuildFailed


@dataclass
class IdentityPool:
    """The uids builds may take: ``first`` … ``first + count - 1``; those in use are held.

    ``groups`` is the range of environment gids; those handed out by this pool are held for
    as long as it lives, so two builds sealing at once never share one.
    """

    first: int
    count: int
    limits: BuildLimits
    groups: range = range(0)

    def __post_init__(self) -> None:
        self._held: set[int] = set()
        self._groups_given: set[int] = set()

    def take(self, venv_gids: Collection[int] = ()) -> int:
        """A uid of the range that no build holds, no process runs as and no venv's group is."""
        busy = self._held | _uids_running() | set(venv_gids)
        for _ in range(64):
            uid = self.first + secrets.randbelow(self.count)
            if uid not in busy and uid not in self.groups and not _has_passwd_entry(uid):
                self._held.add(uid)
                return uid
        raise BuildFailed("every build identity of the reserved range is busy; try again later")

    def release(self, uid: int) -> None:
        self._held.discard(uid)

    def take_group(self, venv_gids: Collection[int]) -> int:
        """An environment gid that no venv (``venv_gids``), build or earlier call has."""
        busy = set(venv_gids) | self._groups_given | self._held
        gid = choose_gid(self.groups, busy)
        self._groups_given.add(gid)
        return gid

    @contextlib.asynccontextmanager
    async def identity(
        self, purpose: str, venv_gids: Collection[int] = ()
    ) -> AsyncIterator[BuildAccount]:
        """A fresh identity in a fresh cgroup for one build; everything it ran ends on exit.

        ``venv_gids``: the groups of the built venvs, which the identity's gid must not be.
        """
        if os.geteuid() != 0:
            yield BuildAccount(name=pwd.getpwuid(os.geteuid()).pw_name)
            return
        uid = self.take(venv_gids)
        try:
            try:
                cgroup = await asyncio.to_thread(
                    create_build_cgroup, f"{purpose}-{uid}", self.limits
                )
            except CgroupUnavailable as error:
                raise BuildFailed(f"builds cannot be confined here: {error}") from None
            try:
                yield BuildAccount(name=f"build-{uid}", uid=uid, gid=uid, cgroup=cgroup)
            finally:
                await asyncio.to_thread(cgroup.remove)
        finally:
            self.release(uid)


def choose_gid(
    gids: range, busy: Collection[int], pick: Callable[[int], int] = secrets.randbelow
) -> int:
    """A gid of ``gids`` that is not ``busy``: at random, else the first free one."""
    for _ in range(64):
        gid = gids[pick(len(gids))]
        if gid not in busy:
            return gid
    for gid in gids:
        if gid not in busy:
            return gid
    raise BuildFailed(
        "every environment group of the reserved range is in use; remove environments no one "
        "uses, or ask the site's admins to widen builder.environment_gid_count"
    )


def venv_gids(environments_dir: Path) -> set[int]:
    """The groups of the folders at the top of the environments folder (one per venv)."""
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError), os.scandir(environments_dir) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                found.add(entry.stat(follow_symlinks=False).st_gid)
    return found


def _uids_running() -> set[int]:
    """The real uids of every process on this machine."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                found.add(os.stat(f"/proc/{entry}").st_uid)
    return found


def _has_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def identity_pool(settings: BuilderSettings) -> IdentityPool:
    """The site's build identities and the limits of each build."""
    return IdentityPool(
        first=settings.build_uid_first,
        count=settings.build_uid_count,
        limits=BuildLimits(
            memory_bytes=settings.build_memory_mb * 1024 * 1024,
            cpus=settings.build_cpus,
            pids=settings.build_pids,
        ),
        groups=environment_gids(settings),
    )
