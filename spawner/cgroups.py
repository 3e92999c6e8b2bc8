"""Per-server memory, CPU and process limits for the local backend, cgroups v1 or v2.

Two layers over ``cgroup_layout`` (where the hub's own cgroups are, re-exported here):
``plan_limits`` is pure (a layout and limits in, the steps for one server out);
``apply_limits`` carries a plan out and returns a ``ServerCgroup`` that moves the
server into its groups (``enter_fn``), reads its OOM kills and removes it again.

Each server's groups are made under the hub's own cgroup, ``<hub's cgroup>/kioskhub/
<name>`` for each controller, because inside a container (or a systemd service with
``Delegate=yes``) that subtree is the only place the hub may write.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .cgroup_layout import CgroupLayout, cgroups_available, current_layout, detect_layout

__all__ = [
    "CgroupError",
    "CgroupLayout",
    "CgroupWrite",
    "ServerCgroup",
    "apply_limits",
    "cgroups_available",
    "current_layout",
    "detect_layout",
    "plan_limits",
]

PARENT_GROUP = "kioskhub"
"""The group under the hub's own cgroup that holds one group per server."""

CPU_PERIOD_US = 100_000
"""CFS period: a server with N cores may run N * 100 ms in every 100 ms."""

MIN_CPU_QUOTA_US = 1_000
"""The kernel refuses CFS quotas below 1 ms."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,254}")


class CgroupError(RuntimeError):
    """A cgroup could not be created, written, entered or removed."""


@dataclass(frozen=True)
class CgroupWrite:
    """One step of a plan.

    ``kind`` is ``"mkdir"`` (a shared parent directory, created if missing and kept),
    ``"group"`` (one of the server's own groups: created fresh, entered by the server,
    removed by ``ServerCgroup.remove``) or ``"write"`` (``value`` written to the file
    ``path``).
    """

    kind: Literal["mkdir", "group", "write"]
    path: str
    value: str = ""


def plan_limits(
    name: str,
    memory_bytes: int | None,
    cpu_cores: float | None,
    layout: CgroupLayout,
    max_processes: int | None = None,
) -> list[CgroupWrite]:
    """The directories and values that limit server ``name`` to this memory, CPU, processes.

    Memory is a hard limit with no swap beyond it (where the swap limit exists); CPU is
    a CFS quota of ``cpu_cores * 100 ms`` per 100 ms period; ``max_processes`` caps
    processes and threads together (``pids.max``), so a fork bomb fails with EAGAIN.
    None means no limit of that kind. Raises ValueError for a bad name or limit,
    CgroupError when the layout lacks a controller that a limit needs.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"cgroup name {name!r} must be 1-255 characters of letters, digits and "
            "'_.@+-', starting with a letter or digit"
        )
    if memory_bytes is not None and memory_bytes < 2**20:
        raise ValueError(f"memory limit must be at least 1 MiB (1048576 bytes), got {memory_bytes}")
    quota = None
    if cpu_cores is not None:
        quota = round(cpu_cores * CPU_PERIOD_US)
        if quota < MIN_CPU_QUOTA_US:
            raise ValueError(f"CPU limit must be at least 0.01 cores, got {cpu_cores}")
        if layout.cpu_dir is None:
            raise CgroupError(
                "a CPU limit was asked for, but no cgroup cpu controller is mounted "
                "for this process (see /proc/self/cgroup)"
            )
    if max_processes is not None:
        if max_processes < 1:
            raise ValueError(f"process limit must be at least 1, got {max_processes}")
        if layout.pids_dir is None:
            raise CgroupError(
                "a process limit was asked for, but no cgroup pids controller is mounted "
                "for this process (see /proc/self/cgroup)"
            )
    if layout.version == 2:
        return _plan_v2(name, memory_bytes, quota, max_processes, layout)
    return _plan_v1(name, memory_bytes, quota, max_processes, layout)


def _plan_v2(name, memory_bytes, quota, max_processes, layout: CgroupLayout):
    controllers = [
        controller
        for controller, limit in (("memory", memory_bytes), ("cpu", quota), ("pids", max_processes))
        if limit is not None
    ]
    if not controllers:
        return []
    enable = " ".join(f"+{c}" for c in controllers)
    parent = posixpath.join(layout.memory_dir, PARENT_GROUP)
    group = posixpath.join(parent, name)
    plan = [
        CgroupWrite("write", posixpath.join(layout.memory_dir, "cgroup.subtree_control"), enable),
        CgroupWrite("mkdir", parent),
        CgroupWrite("write", posixpath.join(parent, "cgroup.subtree_control"), enable),
        CgroupWrite("group", group),
    ]
    if memory_bytes is not None:
        plan.append(CgroupWrite("write", posixpath.join(group, "memory.max"), str(memory_bytes)))
        if layout.swap_limit:
            plan.append(CgroupWrite("write", posixpath.join(group, "memory.swap.max"), "0"))
    if quota is not None:
        plan.append(
            CgroupWrite("write", posixpath.join(group, "cpu.max"), f"{quota} {CPU_PERIOD_US}")
        )
    if max_processes is not None:
        plan.append(CgroupWrite("write", posixpath.join(group, "pids.max"), str(max_processes)))
    return plan


def _plan_v1(name, memory_bytes, quota, max_processes, layout: CgroupLayout):
    plan: list[CgroupWrite] = []

    def group_under(hub_dir: str) -> str:
        parent = posixpath.join(hub_dir, PARENT_GROUP)
        group = posixpath.join(parent, name)
        for step in (CgroupWrite("mkdir", parent), CgroupWrite("group", group)):
            if step not in plan:
                plan.append(step)
        return group

    if memory_bytes is not None:
        group = group_under(layout.memory_dir)
        plan.append(
            CgroupWrite("write", posixpath.join(group, "memory.limit_in_bytes"), str(memory_bytes))
        )
        if layout.swap_limit:
            path = posixpath.join(group, "memory.memsw.limit_in_bytes")
            plan.append(CgroupWrite("write", path, str(memory_bytes)))
    if quota is not None:
        group = group_under(layout.cpu_dir)
        plan.append(
            CgroupWrite("write", posixpath.join(group, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
        )
        plan.append(CgroupWrite("write", posixpath.join(group, "cpu.cfs_quota_us"), str(quota)))
    if max_processes is not None:
        group = group_under(layout.pids_dir)
        plan.append(CgroupWrite("write", posixpath.join(group, "pids.max"), str(max_processes)))
    if plan and layout.cpuacct_dir is not None:
        limits, plan = plan, []
        group_under(layout.cpuacct_dir)  # counts the server's CPU time for its usage record
        plan += [step for step in limits if step not in plan]
    return plan


@dataclass(frozen=True)
class ServerCgroup:
    """One server's groups (one per v1 hierarchy, one in v2) once created.

    Plain data, so a restarted hub can rebuild it from spawner state and still read
    OOM kills and remove the groups.
    """

    dirs: tuple[str, ...]
    memory_dir: str | None = None

    @property
    def procs_files(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files that a process writes its pid to, to enter."""
        return tuple(posixpath.join(d, "cgroup.procs") for d in self.dirs)

    def enter_fn(self) -> Callable[[], None]:
        """A callable for ``preexec_fn`` that moves the calling process into the groups.

        It runs in the forked child before exec, so it only calls ``os.open``,
        ``os.write`` and ``os.close`` on paths encoded beforehand (``0`` means "the
        writing process"). Call it before dropping root; an error fails the spawn
        rather than running the server without limits.
        """
        paths = tuple(os.fsencode(p) for p in self.procs_files)

        def enter_cgroups() -> None:
            for path in paths:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0\n")
                finally:
                    os.close(fd)

        return enter_cgroups

    def pids(self) -> set[int]:
        """Processes in the server's groups now."""
        found: set[int] = set()
        for path in self.procs_files:
            try:
                with open(path) as procs:
                    found.update(int(line) for line in procs if line.strip())
            except FileNotFoundError:
                continue
        return found

    def oom_kills(self) -> int:
        """How many processes the kernel killed for exceeding the memory limit.

        v2 ``memory.events`` ``oom_kill``; v1 ``memory.oom_control`` ``oom_kill``
        (kernels >= 4.13), else ``memory.failcnt`` (times the limit was hit).
        """
        if self.memory_dir is None:
            return 0
        for filename in ("memory.events", "memory.oom_control"):
            try:
                with open(posixpath.join(self.memory_dir, filename)) as f:
                    counters = dict(line.split() for line in f if len(line.split()) == 2)
            except FileNotFoundError:
                continue
            if "oom_kill" in counters:
                return int(counters["oom_kill"])
        with open(posixpath.join(self.memory_dir, "memory.failcnt")) as f:
            return int(f.read())

    def remove(self, timeout: float = 5.0) -> int:
        """SIGKILL what is still inside, remove the groups, and return how many were killed.

        Polls for at most ``timeout`` seconds while killed processes exit; the groups
        are usually empty already, when it returns at once.
        """
        deadline = time.monotonic() + timeout
        killed: set[int] = set()
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise CgroupError(
                    f"processes {sorted(pids)} are still in {', '.join(self.dirs)} "
                    f"{timeout:g} s after SIGKILL; they may be stuck in the kernel (state D)"
                )
            time.sleep(0.02)
        for path in self.dirs:
            while True:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    if error.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                    raise CgroupError(f"could not remove cgroup {path}: {error.strerror}") from None
                break
        return len(killed)


def apply_limits(plan: list[CgroupWrite]) -> ServerCgroup:
    """Create the directories and write the values of ``plan``; undo its groups on failure.

    A server group left behind by an earlier run is replaced when empty (so its OOM
    count starts at zero); one that still holds processes is an error.
    """
    created: list[str] = []
    try:
        for step in plan:
            if step.kind == "mkdir":
                _mkdir(step.path, exist_ok=True)
            elif step.kind == "group":
                _mkdir(step.path, exist_ok=False)
                created.append(step.path)
            else:
                _write(step.path, step.value)
    except BaseException:
        for path in reversed(created):
            try:
                os.rmdir(path)
            except OSError:
                pass
        raise
    memory_dir = next(
        (
            posixpath.dirname(step.path)
            for step in plan
            if step.kind == "write" and posixpath.basename(step.path).startswith("memory.")
        ),
        None,
    )
    return ServerCgroup(dirs=tuple(created), memory_dir=memory_dir)


def _mkdir(path: str, exist_ok: bool) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        if exist_ok:
            return
        try:
            os.rmdir(path)
        except OSError as error:
            raise CgroupError(
                f"cgroup {path} already exists and could not be replaced ({error.strerror}); "
                "is a server of the same name still running?"
            ) from None
        _mkdir(path, exist_ok=False)
    except OSError as error:
        raise CgroupError(
            f"could not create cgroup {path}: {error.strerror} (needs root and a "
            "writable cgroup filesystem)"
        ) from None


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as error:
        hint = ""
        if error.errno == errno.EBUSY and path.endswith("cgroup.subtree_control"):
            hint = (
                "; cgroup v2 lets only a cgroup without processes enable controllers for its "
                "children: start the hub in a child cgroup of a delegated one"
            )
        raise CgroupError(f"could not write {value!r} to {path}: {error.strerror}{hint}") from None
