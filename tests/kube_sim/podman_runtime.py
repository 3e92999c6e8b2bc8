"""The simulated node's container runtime: podman, run as the project runs it (``podman_cli``).

Everything it makes carries the cluster's label (``node_pod.CLUSTER_LABEL``), so a stopped
simulation removes its own pods and volumes and nobody else's. Failures are ``PodmanError``s
quoting podman's own message, which the kubelet passes on in events and container statuses.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

import yaml

from kioskhub.spawner.podman_cli import PodmanError, podman_command, podman_env, run_podman
from kioskhub.spawner.podman_plan import POD_NETWORK
from kioskhub.spawner.podman_pull import image_registry

from .node_pod import CLUSTER_LABEL

HOST_LOOPBACK = "10.0.2.2"
"""This machine's 127.0.0.1 as a pod sees it: the hub's API, for ``hub_connect_url``."""


@dataclass(frozen=True)
class ContainerState:
    """What ``podman container inspect`` says of one container."""

    status: str  # created, running, exited, ... or "missing"
    exit_code: int = 0
    started_at: str = ""
    finished_at: str = ""
    oom_killed: bool = False
    restarts: int = 0
    image_id: str = ""
    container_id: str = ""


def _timestamp(podman_time: str) -> str:
    """podman's RFC 3339 time with nanoseconds → the API's seconds: '...T10:01:17Z'."""
    return podman_time[:19] + "Z" if podman_time and not podman_time.startswith("0001") else ""


class PodmanRuntime:
    """Pull, play, inspect and remove the pods of one simulated cluster."""

    def __init__(self, cluster: str, insecure_registries=()):
        self.cluster = cluster
        self.insecure_registries = set(insecure_registries)

    def _tls(self, image: str) -> tuple[str, ...]:
        return ("--tls-verify=false",) if image_registry(image) in self.insecure_registries else ()

    async def has_image(self, image: str) -> bool:
        return (await run_podman("image", "exists", image, check=False)).returncode == 0

    async def pull(self, image: str) -> float:
        """Pull ``image``; the seconds it took. PodmanError with podman's message if it fails."""
        start = time.monotonic()
        result = await run_podman("pull", "--quiet", *self._tls(image), image, check=False)
        if result.returncode != 0:
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise PodmanError(lines[-1].removeprefix("Error: ") if lines else "podman pull failed")
        return time.monotonic() - start

    async def create_volume(self, name: str) -> None:
        """The claim's volume (kept when it exists: a claim outlives its pods)."""
        if (await run_podman("volume", "exists", name, check=False)).returncode != 0:
            await run_podman("volume", "create", "--label", f"{CLUSTER_LABEL}={self.cluster}",
                             name)

    async def remove_volume(self, name: str) -> None:
        await run_podman("volume", "rm", "--force", name, check=False)

    async def play(self, document: dict, image: str) -> None:
        """Run the pod ``document`` (``node_pod``) on the pod network."""
        await run_podman("pod", "rm", "--force", "--ignore", "--time", "0",
                         document["metadata"]["name"], check=False)
        result = await run_podman(
            "kube", "play", "--network", POD_NETWORK, *self._tls(image), "-",
            stdin=yaml.safe_dump(document).encode(), check=False,
        )
        if result.returncode != 0:
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise PodmanError(lines[-1].removeprefix("Error: ") if lines else "kube play failed")

    async def inspect(self, container: str) -> ContainerState:
        found = await run_podman("container", "inspect", "--format", "json", container,
                                 check=False)
        if found.returncode != 0:
            return ContainerState("missing")
        record = json.loads(found.stdout)[0]
        state = record["State"]
        return ContainerState(
            status=state["Status"],
            exit_code=int(state.get("ExitCode", 0)),
            started_at=_timestamp(state.get("StartedAt", "")),
            finished_at=_timestamp(state.get("FinishedAt", "")),
            oom_killed=bool(state.get("OOMKilled")),
            restarts=int(record.get("RestartCount", 0)),
            image_id=record.get("Image", ""),
            container_id=record.get("Id", ""),
        )

    async def kill(self, container: str) -> None:
        await run_podman("kill", "--signal", "KILL", container)

    async def remove_pod(self, sandbox: str, grace_seconds: int) -> None:
        """Stop the pod (SIGTERM, then SIGKILL after the grace period) and remove it."""
        await run_podman("pod", "rm", "--force", "--ignore", "--time", str(grace_seconds),
                         sandbox, check=False)

    def remove_everything(self) -> None:
        """Remove this cluster's pods and volumes (blocking: for the simulation's shutdown)."""

        def podman(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(podman_command(*args), env=podman_env(), capture_output=True,
                                  text=True, timeout=120, check=False)

        label = f"label={CLUSTER_LABEL}={self.cluster}"
        pods = podman("pod", "ps", "--quiet", "--filter", label).stdout.split()
        if pods:
            podman("pod", "rm", "--force", "--time", "0", *pods)
        volumes = podman("volume", "ls", "--quiet", "--filter", label).stdout.split()
        if volumes:
            podman("volume", "rm", "--force", *volumes)
