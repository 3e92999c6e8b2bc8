"""Per-server memory, CPU and process limits for the local backend, cgroups v1 or v2.

Three layers: ``detect_layout`` and ``plan_limits`` are pure (text in, data out) and
say where the hub's own cgroups are and what to write for one server;
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
from dataclasses import dataclass, replace
from typing import Literal

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
class CgroupLayout:
    """Where this process's cgroups are: mount points and the hub's own group in each.

    ``version`` is 1 (one hierarchy per controller) or 2 (unified: the same mount and
    group for memory and cpu). ``*_cgroup`` is the hub's group relative to its mount,
    ``"/"`` when the hub sits at the mount's top. ``cpu_*`` is None when no cpu
    controller is mounted. ``swap_limit`` says whether the swap limit file exists
    (v1 ``memory.memsw.limit_in_bytes``, v2 ``memory.swap.max``); only I/O can tell,
    so ``detect_layout`` leaves it False and ``current_layout`` fills it in.
    """

    version: Literal[1, 2]
    memory_mount: str
    memory_cgroup: str
    cpu_mount: str | None
    cpu_cgroup: str | None
    swap_limit: bool = False
    pids_mount: str | None = None
    pids_cgroup: str | None = None

    @property
    def memory_dir(self) -> str:
        """The hub's own memory cgroup directory."""
        return _under(self.memory_mount, self.memory_cgroup)

    @property
    def cpu_dir(self) -> str | None:
        """The hub's own cpu cgroup directory, None without a cpu controller."""
        if self.cpu_mount is None or self.cpu_cgroup is None:
            return None
        return _under(self.cpu_mount, self.cpu_cgroup)

    @property
    def pids_dir(self) -> str | None:
        """The hub's own pids cgroup directory, None without a pids controller."""
        if self.pids_mount is None or self.pids_cgroup is None:
            return None
        return _under(self.pids_mount, self.pids_cgroup)


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


def detect_layout(proc_self_cgroup_text: str, mounts_text: str) -> CgroupLayout | None:
    """Find the hub's memory and cpu cgroups from ``/proc/self/cgroup`` and mount text.

    ``mounts_text`` is ``/proc/self/mountinfo`` (preferred: it says which part of a
    hierarchy a mount shows, as in containers) or ``/proc/mounts``. cgroup v1 wins when
    the memory controller is in a v1 hierarchy (hybrid machines mount an empty v2 tree
    beside it); otherwise v2. None when no memory controller can be found.
    """
    memberships = _parse_proc_cgroup(proc_self_cgroup_text)
    mounts = _parse_mounts(mounts_text)
    v1 = {c: (ctrls, path) for ctrls, path in memberships if ctrls for c in ctrls}
    if "memory" in v1:
        memory = _locate(mounts, "cgroup", *v1["memory"])
        if memory is None:
            return None
        cpu = _locate(mounts, "cgroup", *v1["cpu"]) if "cpu" in v1 else None
        pids = _locate(mounts, "cgroup", *v1["pids"]) if "pids" in v1 else None
        return CgroupLayout(1, *memory, *(cpu or (None, None)), False, *(pids or (None, None)))
    unified = [path for ctrls, path in memberships if not ctrls]
    if unified:
        found = _locate(mounts, "cgroup2", frozenset(), unified[0])
        if found is not None:
            return CgroupLayout(2, *found, *found, False, *found)
    return None


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


def current_layout() -> CgroupLayout | None:
    """``detect_layout`` for this process, with ``swap_limit`` read from the filesystem.

    The pids controller is dropped from the layout where the hub may not use it.

    A v2 hub in the machine's root cgroup gets no swap limit: the root has no
    ``memory.swap.max`` to look at.
    """
    with open("/proc/self/cgroup") as cgroup, open("/proc/self/mountinfo") as mountinfo:
        layout = detect_layout(cgroup.read(), mountinfo.read())
    if layout is None:
        return None
    swap_file = "memory.memsw.limit_in_bytes" if layout.version == 1 else "memory.swap.max"
    layout = replace(
        layout, swap_limit=os.path.exists(posixpath.join(layout.memory_dir, swap_file))
    )
    if layout.pids_dir is not None and not _pids_usable(layout):
        layout = replace(layout, pids_mount=None, pids_cgroup=None)
    return layout


def _pids_usable(layout: CgroupLayout) -> bool:
    if layout.version == 2:
        controllers = posixpath.join(layout.pids_dir, "cgroup.controllers")
        return os.path.exists(controllers) and "pids" in _read_words(controllers)
    return os.path.isdir(layout.pids_dir) and os.access(layout.pids_dir, os.W_OK)


def cgroups_available() -> str | None:
    """None when this hub can limit servers through cgroups, else why not (to warn)."""
    if os.geteuid() != 0:
        return f"the hub is not running as root (uid {os.geteuid()}); creating cgroups needs root"
    try:
        layout = current_layout()
    except OSError as error:
        return f"cannot read {error.filename}: {error.strerror}"
    if layout is None:
        return "no cgroup memory controller is mounted for this process (see /proc/self/cgroup)"
    if layout.cpu_dir is None:
        return "no cgroup cpu controller is mounted for this process (see /proc/self/cgroup)"
    for path in dict.fromkeys([layout.memory_dir, layout.cpu_dir]):
        if not os.path.isdir(path):
            return f"this process's cgroup {path} is not visible (mounted from another namespace?)"
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return (
                f"{path} is on a read-only cgroup filesystem (a container without cgroup rights?)"
            )
        if not os.access(path, os.W_OK):
            return f"{path} is not writable for the hub"
    if layout.version == 2:
        return _v2_unavailable(layout.memory_dir)
    return None


def _v2_unavailable(hub_dir: str) -> str | None:
    available = _read_words(posixpath.join(hub_dir, "cgroup.controllers"))
    missing = sorted({"memory", "cpu"} - available)
    if missing:
        return (
            f"the controllers {', '.join(missing)} are not delegated to {hub_dir} (its "
            f"cgroup.controllers lists {' '.join(sorted(available)) or 'none'})"
        )
    enabled = _read_words(posixpath.join(hub_dir, "cgroup.subtree_control"))
    is_root = not os.path.exists(posixpath.join(hub_dir, "cgroup.type"))
    if {"memory", "cpu"} <= enabled or is_root or not _read_words(f"{hub_dir}/cgroup.procs"):
        return None
    return (
        f"the hub's cgroup {hub_dir} holds processes, and cgroup v2 lets only a cgroup "
        "without processes enable controllers for its children; start the hub in a "
        "child cgroup of a delegated one (systemd: Delegate=yes and DelegateSubgroup=hub)"
    )


def _read_words(path: str) -> set[str]:
    with open(path) as f:
        return set(f.read().split())


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


def _under(mount: str, cgroup: str) -> str:
    return posixpath.normpath(posixpath.join(mount, cgroup.lstrip("/")))


def _parse_proc_cgroup(text: str) -> list[tuple[frozenset[str], str]]:
    """``hierarchy-ID:controller-list:path`` lines → (controllers, path); v2 has none."""
    memberships = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            controllers = frozenset(c for c in parts[1].split(",") if c)
            memberships.append((controllers, parts[2]))
    return memberships


def _parse_mounts(text: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """mountinfo or /proc/mounts lines → (fstype, root, mount point, options)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if " - " in line:
            separator = fields.index("-")
            root, point, options = fields[3], fields[4], fields[5].split(",")
            fstype, options = fields[separator + 1], options + fields[separator + 3].split(",")
        elif len(fields) >= 4:
            root, point, fstype, options = "/", fields[1], fields[2], fields[3].split(",")
        else:
            continue
        mounts.append((fstype, _unescape(root), _unescape(point), frozenset(options)))
    return mounts


def _locate(mounts, fstype: str, controllers: frozenset[str], path: str) -> tuple[str, str] | None:
    """The first mount of this hierarchy that shows ``path``, and ``path`` below it."""
    for mount_type, root, point, options in mounts:
        if mount_type != fstype or not controllers <= options:
            continue
        root = root.rstrip("/")
        if path == root or path.startswith(root + "/"):
            return point, "/" + path[len(root) :].lstrip("/")
    return None


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)
