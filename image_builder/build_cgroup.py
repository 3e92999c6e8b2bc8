"""A cgroup of its own for each build: memory, CPU and pids limits, and a kill that leaves nothing.

Each build's group is made under the builder service's own cgroup, ``<own cgroup>/
kioskhub-builds/<name>`` in the memory, cpu and pids hierarchies (cgroups v1) or once in the
unified hierarchy (v2). Every step of the build enters it before it drops to the build's
identity; a build cannot leave it (``cgroup.procs`` is root's), so ``kill_all`` finds every
process the build started, ``setsid`` and double forks included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

BUILDS_GROUP = "kioskhub-builds"
V1_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000


class CgroupUnavailable(RuntimeError):
    """The build's cgroup could not be made; the message says why."""


@dataclass(frozen=True)
class BuildLimits:
    """What one build may use: memory (bytes), CPUs (cores) and processes."""

    memory_bytes: int
    cpus: float
    pids: int


@dataclass(frozen=True)
class BuildCgroup:
    """One build's group: its folder in each hierarchy (the first holds the pids controller)."""

    folders: tuple[str, ...]

    def enter(self) -> None:
        """Move the calling process into the group (in the child, before it drops to the build)."""
        pid = str(os.getpid()).encode()
        for folder in self.folders:
            fd = os.open(os.path.join(folder, "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def members(self) -> set[int]:
        """The processes in the group now."""
        found: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(FileNotFoundError):
                with open(os.path.join(folder, "cgroup.procs")) as procs:
                    found |= {int(line) for line in procs if line.strip()}
        return found

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the group until none is left (forks included)."""
        kill_file = os.path.join(self.folders[0], "cgroup.kill")
        deadline = time.monotonic() + timeout
        while members := self.members():
            if os.path.exists(kill_file):
                with open(kill_file, "w") as kill:
                    kill.write("1")
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise CgroupUnavailable(
                    f"processes {sorted(members)} of a build did not end within {timeout:.0f} s"
                )
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left and remove the group's folders."""
        self.kill_all()
        for folder in self.folders:
            for _ in range(50):
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last killed processes are reaped
                    time.sleep(0.02)


def own_cgroups(proc_self_cgroup: str) -> dict[str, str]:
    """Controller → this process's group (``""`` for the v2 unified hierarchy). Pure."""
    groups: dict[str, str] = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups


def cgroup_mounts(proc_mounts: str) -> dict[str, str]:
    """Controller → v1 mount point, and ``""`` → the v2 mount point. Pure."""
    mounts: dict[str, str] = {}
    for line in proc_mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2":
            mounts.setdefault("", fields[1])
        elif fields[2] == "cgroup":
            for option in fields[3].split(","):
                if option in V1_CONTROLLERS:
                    mounts.setdefault(option, fields[1])
    return mounts


def build_cgroup_folders(proc_self_cgroup: str, proc_mounts: str, name: str) -> tuple[str, ...]:
    """Where ``name``'s group goes: one folder per v1 controller (pids first), or one v2 folder."""
    groups, mounts = own_cgroups(proc_self_cgroup), cgroup_mounts(proc_mounts)
    if all(c in mounts and c in groups for c in V1_CONTROLLERS):
        order = ("pids", "memory", "cpu")
        return tuple(_join(mounts[c], groups[c], BUILDS_GROUP, name) for c in order)
    if "" in mounts and "" in groups:
        return (_join(mounts[""], groups[""], BUILDS_GROUP, name),)
    raise CgroupUnavailable(
        "no cgroup hierarchy with the memory, cpu and pids controllers is mounted"
    )


def _join(mount: str, group: str, *names: str) -> str:
    return os.path.join(mount, group.lstrip("/"), *names)


def create_build_cgroup(name: str, limits: BuildLimits) -> BuildCgroup:
    """Make ``name``'s group with ``limits``; CgroupUnavailable says why it could not."""
    with open("/proc/self/cgroup") as own, open("/proc/self/mounts") as mounts:
        folders = build_cgroup_folders(own.read(), mounts.read(), name)
    try:
        if len(folders) == 1:
            _prepare_v2(folders[0])
        for folder in folders:
            os.makedirs(folder, mode=0o755, exist_ok=True)
        _write_limits(folders, limits)
    except OSError as error:
        BuildCgroup(folders).remove()
        raise CgroupUnavailable(f"the build's cgroup could not be made: {error}") from None
    return BuildCgroup(folders)


def _prepare_v2(folder: str) -> None:
    """Enable the controllers for the builds' parent group (v2 delegates them level by level)."""
    parent = os.path.dirname(folder)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    for level in (os.path.dirname(parent), parent):
        with open(os.path.join(level, "cgroup.subtree_control"), "w") as control:
            control.write("+memory +cpu +pids")


def _write_limits(folders: tuple[str, ...], limits: BuildLimits) -> None:
    quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
    if len(folders) == 1:
        values = {
            "memory.max": str(limits.memory_bytes),
            "memory.swap.max": "0",
            "cpu.max": f"{quota} {CPU_PERIOD_US}",
            "pids.max": str(limits.pids),
        }
        folder_of = dict.fromkeys(values, folders[0])
    else:
        pids, memory, cpu = folders
        values = {
            "pids.max": str(limits.pids),
            "memory.limit_in_bytes": str(limits.memory_bytes),
            "cpu.cfs_period_us": str(CPU_PERIOD_US),
            "cpu.cfs_quota_us": str(quota),
        }
        folder_of = {
            "pids.max": pids,
            "memory.limit_in_bytes": memory,
            "cpu.cfs_period_us": cpu,
            "cpu.cfs_quota_us": cpu,
        }
    for file, value in values.items():
        path = os.path.join(folder_of[file], file)
        if file == "memory.swap.max" and not os.path.exists(path):
            continue
        with open(path, "w") as handle:
            handle.write(value)
