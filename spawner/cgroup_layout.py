"""Where the hub's cgroups are (v1 or v2), and whether it may limit servers through them.

``detect_layout`` is pure (the texts of ``/proc/self/cgroup`` and the mount table in, a
``CgroupLayout`` out); ``current_layout`` and ``cgroups_available`` read this process's.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, replace
from typing import Literal


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
    cpuacct_mount: str | None = None
    cpuacct_cgroup: str | None = None

    @property
    def memory_dir(self) -> str:
        """The hub's own memory cgroup directory."""
        return under(self.memory_mount, self.memory_cgroup)

    @property
    def cpu_dir(self) -> str | None:
        """The hub's own cpu cgroup directory, None without a cpu controller."""
        if self.cpu_mount is None or self.cpu_cgroup is None:
            return None
        return under(self.cpu_mount, self.cpu_cgroup)

    @property
    def pids_dir(self) -> str | None:
        """The hub's own pids cgroup directory, None without a pids controller."""
        if self.pids_mount is None or self.pids_cgroup is None:
            return None
        return under(self.pids_mount, self.pids_cgroup)

    @property
    def cpuacct_dir(self) -> str | None:
        """The hub's own v1 cpuacct directory (CPU time used, for accounting), or None."""
        if self.cpuacct_mount is None or self.cpuacct_cgroup is None:
            return None
        return under(self.cpuacct_mount, self.cpuacct_cgroup)


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
        acct = _locate(mounts, "cgroup", *v1["cpuacct"]) if "cpuacct" in v1 else None
        return CgroupLayout(
            1,
            *memory,
            *(cpu or (None, None)),
            False,
            *(pids or (None, None)),
            *(acct or (None, None)),
        )
    unified = [path for ctrls, path in memberships if not ctrls]
    if unified:
        found = _locate(mounts, "cgroup2", frozenset(), unified[0])
        if found is not None:
            return CgroupLayout(2, *found, *found, False, *found)
    return None


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
    acct = layout.cpuacct_dir
    if acct is not None and not (os.path.isdir(acct) and os.access(acct, os.W_OK)):
        layout = replace(layout, cpuacct_mount=None, cpuacct_cgroup=None)
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


def under(mount: str, cgroup: str) -> str:
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


CGROUP_PATH = re.compile(r"(/[A-Za-z0-9_.:@-]+)+")


def usage_dirs(cgroup_path: str, proc_self_cgroup_text: str, mounts_text: str) -> tuple[str, ...]:
    """The folders that count the CPU time and memory of the cgroup ``cgroup_path`` (pure).

    ``cgroup_path`` is a group's path in every hierarchy, as podman reports a pod's
    (``/libpod_parent/<id>``); the texts are the hub's, as in ``detect_layout``. v1: the
    cpuacct and memory folders; v2: the one unified folder; () where none shows it.
    A path with ``..``, or other than plain names, is refused (ValueError).
    """
    parts = cgroup_path.split("/")
    if not CGROUP_PATH.fullmatch(cgroup_path) or ".." in parts or "." in parts:
        raise ValueError(f"not a plain cgroup path: {cgroup_path!r}")
    own = _parse_proc_cgroup(proc_self_cgroup_text)
    text = "\n".join(
        f"{i}:{','.join(sorted(ctrls))}:{cgroup_path}" for i, (ctrls, _) in enumerate(own)
    )
    layout = detect_layout(text, mounts_text)
    if layout is None:
        return ()
    if layout.version == 2:
        return (layout.memory_dir,)
    return tuple(dict.fromkeys(d for d in (layout.cpuacct_dir, layout.memory_dir) if d))


def current_usage_dirs(cgroup_path: str) -> tuple[str, ...]:
    """``usage_dirs`` of ``cgroup_path`` on this machine (blocking: call in a thread)."""
    with open("/proc/self/cgroup") as cgroup, open("/proc/self/mountinfo") as mountinfo:
        return usage_dirs(cgroup_path, cgroup.read(), mountinfo.read())
