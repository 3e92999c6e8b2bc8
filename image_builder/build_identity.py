"""A fresh unprivileged identity for each build, and its end: nothing of it outlives the build.

When the service runs as root, every build (and every server layer preparation) takes a uid
of its own from the range the site reserves (``builder.build_uid_first`` and
``build_uid_count``), with the same number as its gid, no supplementary groups and no passwd
entry, and a cgroup of its own with the site's limits. No other build runs as that uid at the
same time, and a uid still owning a process is never handed out. When the build ends, every
process in its cgroup is killed and the group removed. Without root, builds run as the
service's own account, with neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kioskhub.hub.schema.builder import BuilderSettings

from .build_cgroup import BuildLimits, CgroupUnavailable, create_build_cgroup
from .build_sandbox import BuildAccount
from .builder_base import BuildFailed


@dataclass
class IdentityPool:
    """The uids builds may take: ``first`` … ``first + count - 1``; those in use are held."""

    first: int
    count: int
    limits: BuildLimits

    def __post_init__(self) -> None:
        self._held: set[int] = set()

    def take(self) -> int:
        """A uid of the range that no build holds and no process runs as."""
        busy = self._held | _uids_running()
        for _ in range(64):
            uid = self.first + secrets.randbelow(self.count)
            if uid not in busy and not _has_passwd_entry(uid):
                self._held.add(uid)
                return uid
        raise BuildFailed("every build identity of the reserved range is busy; try again later")

    def release(self, uid: int) -> None:
        self._held.discard(uid)

    @contextlib.asynccontextmanager
    async def identity(self, purpose: str) -> AsyncIterator[BuildAccount]:
        """A fresh identity in a fresh cgroup for one build; everything it ran ends on exit."""
        if os.geteuid() != 0:
            yield BuildAccount(name=pwd.getpwuid(os.geteuid()).pw_name)
            return
        uid = self.take()
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
    )
