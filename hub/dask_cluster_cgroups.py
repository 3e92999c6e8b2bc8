"""Cgroups of Dask cluster processes: one per scheduler and per worker, with its limits.

Each process of a cluster gets the memory and CPU that the cluster's config counts for
it (``scheduler_memory``/``scheduler_cores``, ``worker_memory``/``worker_cores``) and at
most ``MAX_PROCESSES`` processes and threads, in a group ``dask-<cluster>-<process>``
beside the servers' groups (``spawner.cgroups``). The process enters its group before it
drops root, so everything it starts stays inside, ``setsid`` or not; stopping a worker or
the cluster removes the groups, which kills whatever is left in them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath

from kioskhub.hub.schema.choices import ResourceProfile
from kioskhub.spawner import cgroups

log = logging.getLogger("DaskGateway")

PREFIX = "dask-"
MAX_PROCESSES = ResourceProfile.model_fields["max_processes"].default
"""Processes and threads each scheduler and worker may run (its cgroup's pids.max): a fork
bomb in a task stops there. The same default as a server's."""


def group_name(cluster_name: str, process: str) -> str:
    """``dask-<cluster>-<process>``: unique per cluster, and names its cluster."""
    return f"{PREFIX}{cluster_name}-{process}"


def process_limits(config, process: str) -> tuple[int, float]:
    """Memory (bytes) and cores of the cluster process ``process`` ("scheduler" or a
    worker's), from the cluster's config (a dask-gateway ClusterConfig or its dict)."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    kind = "scheduler" if process == "scheduler" else "worker"
    return int(get(f"{kind}_memory")), float(get(f"{kind}_cores"))


class ClusterCgroups:
    """Creates and removes the groups of cluster processes under this process's cgroup.

    Where cgroups are not available (not root, no controllers), says why once in the log
    and creates nothing: clusters then run without limits, as servers do.
    """

    def __init__(self):
        self.unavailable = cgroups.cgroups_available()
        self.layout = None if self.unavailable else cgroups.current_layout()
        if self.unavailable:
            log.warning("Dask clusters run without memory and CPU limits: %s", self.unavailable)

    def create(self, cluster_name: str, process: str, config) -> cgroups.ServerCgroup | None:
        """A fresh group for one process of ``cluster_name``, with its limits."""
        if self.layout is None:
            return None
        memory, cores = process_limits(config, process)
        pids = MAX_PROCESSES if self.layout.pids_dir is not None else None
        plan = cgroups.plan_limits(
            group_name(cluster_name, process), memory, cores, self.layout, pids
        )
        stale = cgroups.ServerCgroup(dirs=tuple(s.path for s in plan if s.kind == "group"))
        stale.remove()
        return cgroups.apply_limits(plan)

    def of_cluster(self, cluster_name: str, process: str = "") -> cgroups.ServerCgroup:
        """The groups of ``cluster_name``'s processes that exist now: all of them, or
        those of ``process`` (with cgroup v1, one per controller: memory, cpu, pids and
        the cpuacct group that counts CPU time for the usage record)."""
        if self.layout is None:
            return cgroups.ServerCgroup(dirs=())
        layout = self.layout
        controllers = (layout.memory_dir, layout.cpu_dir, layout.cpuacct_dir, layout.pids_dir)
        parents = dict.fromkeys(
            posixpath.join(d, cgroups.PARENT_GROUP) for d in controllers if d is not None
        )
        start = group_name(cluster_name, process)
        dirs = []
        for parent in parents:
            try:
                names = os.listdir(parent)
            except FileNotFoundError:
                continue
            dirs += [posixpath.join(parent, n) for n in sorted(names) if n.startswith(start)]
        return cgroups.ServerCgroup(dirs=tuple(dirs))

    async def remove(self, group: cgroups.ServerCgroup, what: str) -> None:
        """Kill what is left in ``group`` and remove it, off the event loop; never raises
        (a group that cannot be removed is logged, and the cluster still stops)."""
        if not group.dirs:
            return
        try:
            killed = await asyncio.to_thread(group.remove)
        except cgroups.CgroupError as error:
            log.error("Could not remove the cgroups of %s: %s", what, error)
            return
        if killed:
            log.warning("Killed %d leftover processes of %s", killed, what)
