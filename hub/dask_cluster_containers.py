"""Dask cluster processes as podman containers of the notebook's own image.

A server in an image environment (a podman pod) gets clusters whose scheduler and workers
run that same image, so a task that imports the image's own packages runs on the workers.
Each process is one container started as dask-gateway starts a local process: the same
command and environment, as the user's system account or lab identity (``--user``,
``--group-add``), with its cluster's
limits (``--memory``, ``--cpus``, ``--pids-limit``), the cluster's working folder (its TLS
files) mounted read-only at the same path, and the host's network, so that its addresses
on 127.0.0.1 work as a local process's do. The API token reaches podman through its own
environment (``--env NAME``), never its argv, which every account on the machine can read;
the other variables are given in the argv, so that none of them (``HOME`` above all)
changes where podman itself, as root, reads its configuration and credentials.

Labels name the gateway (its clusters folder), the cluster and the process: a worker's
or cluster's containers are removed when it stops, and a gateway removes what an earlier
run of it left. A container that is not running counts as a process that exited.

``run_arguments`` and ``container_env`` are pure; ``ClusterContainers`` does the I/O, and
``ImageContainersMixin`` puts it into KioskHub's local backend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dask_gateway_server.backends.base import PublicException

from kioskhub.spawner.podman_cli import run_podman
from kioskhub.spawner.podman_pull import ImageUnavailable, ensure_image

from . import dask_dashboard_guard
from .dask_cluster_cgroups import MAX_PROCESSES, process_limits

log = logging.getLogger("DaskGateway")

LABEL_GATEWAY = "kioskhub.dask-gateway"
LABEL_CLUSTER = "kioskhub.dask-cluster"
LABEL_PROCESS = "kioskhub.dask-process"
GUARD_PATH = "/opt/kioskhub-gateway/dask_dashboard_guard.py"
"""Where the scheduler's dashboard guard is mounted (read-only, from KioskHub's install)."""
CONTAINER_HOME = "/tmp"
"""HOME and working folder in the container: the user's account has no home in the image."""
HOST_ONLY = frozenset(
    {"PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_ROOT", "CONDA_DEFAULT_ENV", "HOME"}
)
"""Variables that describe the host's Python and home, which the image has its own of."""


SECRETS = frozenset({"DASK_GATEWAY_API_TOKEN"})
"""Variables whose values podman gets in its environment, not its argv."""


def image_commands() -> tuple[list[str], list[str]]:
    """The scheduler and worker commands in an image: its own Python (first on its PATH)."""
    return (
        ["python", "-m", "dask", "scheduler", "--preload", GUARD_PATH],
        ["python", "-m", "dask", "worker"],
    )


@dataclass(frozen=True)
class ContainerProcess:
    """One scheduler or worker of a cluster, as a container."""

    gateway: str
    cluster: str
    process: str
    """"scheduler" or "worker-<name>"."""
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    """The container's environment; values of ``SECRETS`` stay out of the argv."""
    uid: int
    gid: int
    workdir: str
    guard: str
    """The dashboard guard's file on the host."""
    memory: int
    cores: float
    pids: int
    groups: tuple[int, ...] = ()
    """Supplementary gids (a lab identity's), each a ``--group-add``."""


def container_name(cluster: str, process: str) -> str:
    return f"dask-{cluster}-{process}"


def container_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment dask-gateway gives a local process, less the host's Python and home."""
    kept = {k: v for k, v in env.items() if k not in HOST_ONLY}
    return {**kept, "HOME": CONTAINER_HOME}


def run_arguments(p: ContainerProcess) -> list[str]:
    """podman's arguments to start ``p`` detached (it prints the container's id)."""
    labels = {LABEL_GATEWAY: p.gateway, LABEL_CLUSTER: p.cluster, LABEL_PROCESS: p.process}
    return [
        "run",
        "--detach",
        "--pull=never",
        f"--name={container_name(p.cluster, p.process)}",
        *(f"--label={key}={value}" for key, value in labels.items()),
        "--network=host",
        f"--user={p.uid}:{p.gid}",
        *(f"--group-add={gid}" for gid in p.groups),
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        f"--memory={p.memory}",
        f"--memory-swap={p.memory}",
        f"--cpus={p.cores:g}",
        f"--pids-limit={p.pids}",
        f"--volume={p.workdir}:{p.workdir}:ro",
        f"--volume={p.guard}:{GUARD_PATH}:ro",
        f"--workdir={CONTAINER_HOME}",
        *(f"--env={k}" if k in SECRETS else f"--env={k}={v}" for k, v in p.env),
        "--",
        p.image,
        *p.command,
    ]


def label_filter(key: str, value: str) -> str:
    return f"--filter=label={key}={value}"


class ClusterContainers:
    """Starts, checks and removes the containers of one gateway's clusters."""

    def __init__(self, gateway: str, stop_seconds: int = 10) -> None:
        self.gateway = gateway
        self.stop_seconds = stop_seconds

    async def start(self, process: ContainerProcess) -> str:
        """Start ``process``; its container id. A container of the same name (an earlier
        try of the same start) is removed first."""
        await self._remove([container_name(process.cluster, process.process)])
        secrets = {k: v for k, v in process.env if k in SECRETS}
        result = await run_podman(*run_arguments(process), env=secrets)
        return result.stdout.strip().splitlines()[-1]

    async def running(self) -> set[str]:
        """The ids of this gateway's containers that are running now."""
        return set(await self._ids(label_filter(LABEL_GATEWAY, self.gateway), every=False))

    async def remove(self, container_id: str | None) -> None:
        if container_id:
            await self._remove([container_id])

    async def remove_cluster(self, cluster: str) -> None:
        """Stop and remove every container of ``cluster``."""
        await self._remove(
            await self._ids(
                label_filter(LABEL_GATEWAY, self.gateway), label_filter(LABEL_CLUSTER, cluster)
            )
        )

    async def remove_leftovers(self) -> int:
        """Remove every container of this gateway: at its start, none can be in use."""
        ids = await self._ids(label_filter(LABEL_GATEWAY, self.gateway))
        await self._remove(ids)
        if ids:
            log.warning("Removed %d leftover Dask containers of an earlier run", len(ids))
        return len(ids)

    async def _ids(self, *filters: str, every: bool = True) -> list[str]:
        listing = await run_podman(
            "ps", *(["--all"] if every else []), "--no-trunc", "--quiet", *filters
        )
        return listing.stdout.split()

    async def _remove(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            result = await run_podman(
                "rm", "--force", "--ignore", f"--time={self.stop_seconds}", *names, check=False
            )
            if result.returncode != 0:
                log.error("Could not remove Dask containers %s: %s", names, result.stderr)


class ImageContainersMixin:
    """For a dask-gateway ``LocalBackend`` (KioskHub's): a cluster whose config names an
    ``environment_image`` runs its scheduler and workers as containers of that image;
    every other cluster runs local processes, as the next class in line runs them.

    The scheduler's state holds its container's id where a local process's holds its
    ``pid``; a worker's the same.
    """

    runs_images = True

    @property
    def containers(self) -> ClusterContainers:
        if getattr(self, "_containers", None) is None:
            self._containers = ClusterContainers(
                self.clusters_directory or "kioskhub", self.sigint_timeout
            )
        return self._containers

    async def do_setup(self):
        await super().do_setup()
        environments = self.environments
        in_memory = self.db_url in ("sqlite://", "sqlite:///:memory:")
        if environments and environments.site.spawner.backend == "podman" and in_memory:
            await self.containers.remove_leftovers()

    async def start_container(self, cluster, process: str, command, env) -> str:
        """Start ``process`` of ``cluster`` as a container; its id."""
        account = self.runs_as(cluster)
        memory, cores = process_limits(cluster.config, process)
        env = container_env(env)
        spec = ContainerProcess(
            gateway=self.containers.gateway,
            cluster=cluster.name,
            process=process,
            image=cluster.config["environment_image"],
            command=tuple(command),
            env=tuple(sorted(env.items())),
            uid=account.uid,
            gid=account.gid,
            groups=account.groups or (),
            workdir=cluster.state["workdir"],
            guard=dask_dashboard_guard.__file__,
            memory=memory,
            cores=cores,
            pids=MAX_PROCESSES,
        )
        return await self.containers.start(spec)

    async def do_start_cluster(self, cluster):
        image = cluster.config.get("environment_image")
        if not image:
            async for state in super().do_start_cluster(cluster):
                yield state
            return
        workdir = self.setup_working_directory(cluster)
        yield {"workdir": workdir}
        insecure = self.environments.site.pull_insecure_registries()
        try:
            await ensure_image(image, insecure, lambda line: self.log.info("%s", line))
        except ImageUnavailable as error:
            raise PublicException(str(error)) from None
        command, env = self.get_scheduler_command(cluster), self.get_scheduler_env(cluster)
        container = await self.start_container(cluster, "scheduler", command, env)
        yield {"workdir": workdir, "container": container}

    async def do_start_worker(self, worker):
        cluster = worker.cluster
        if not cluster.config.get("environment_image"):
            async for state in super().do_start_worker(worker):
                yield state
            return
        command = self.get_worker_command(cluster, worker.name)
        env = self.get_worker_env(cluster)
        yield {
            "container": await self.start_container(cluster, f"worker-{worker.name}", command, env)
        }

    async def _alive(self, items) -> list[bool]:
        """Whether each cluster's scheduler (or worker) is running: its container, or its
        local process."""
        if not any(item.state.get("container") for item in items):
            return [self._check_status(item) for item in items]
        running = await self.containers.running()
        return [
            item.state["container"] in running
            if item.state.get("container")
            else self._check_status(item)
            for item in items
        ]

    async def do_check_clusters(self, clusters):
        return await self._alive(clusters)

    async def do_check_workers(self, workers):
        return await self._alive(workers)

    async def do_stop_worker(self, worker):
        if worker.state.get("container"):
            await self.containers.remove(worker.state["container"])
        else:
            await super().do_stop_worker(worker)

    async def do_stop_cluster(self, cluster):
        if not cluster.config.get("environment_image"):
            await super().do_stop_cluster(cluster)
            return
        self._scale_requests.pop(cluster.name, None)
        await self.containers.remove_cluster(cluster.name)
        workdir = cluster.state.get("workdir")
        if workdir is not None:
            self.cleanup_working_directory(workdir)
