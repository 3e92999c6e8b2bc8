"""The simulated Kubernetes API server, running on 127.0.0.1 at a random port.

It runs in a thread with its own event loop, so tests (and the hub code under test, on
their own loop) talk to it over HTTP only, through kubernetes_asyncio as KubeSpawner does.
``write_kubeconfig`` writes the kubeconfig a client needs (server URL and bearer token).
Control methods (``kill``, ``add_namespace``) run on the simulation's loop and return once
done. Its kubelet runs each pod with podman (``kubelet``); when the simulation stops, its pods
and volumes are removed. Pods reach this machine's loopback (the hub) at ``HOST_LOOPBACK``.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support.threaded_api import ThreadedAPI

from .api import ROUTES, NotFoundHandler
from .kubelet import DEFAULT_NODES, Kubelet
from .model import ClusterModel
from .podman_runtime import HOST_LOOPBACK

__all__ = ["HOST_LOOPBACK", "KubernetesSimulation"]


class KubernetesSimulation(ThreadedAPI):
    """Start with ``with KubernetesSimulation() as cluster:``; ``cluster.url`` is its URL."""

    name = "Kubernetes simulation"
    routes = ROUTES
    not_found = NotFoundHandler

    def __init__(self, *, step: float = 0.05, nodes=DEFAULT_NODES, history_limit: int = 1000,
                 insecure_registries=(), pull_backoff: float = 2.0):
        super().__init__()
        self.step = step
        self.nodes = nodes
        self.insecure_registries = tuple(insecure_registries)
        """Registries the nodes pull from without TLS (a registry on loopback)."""
        self.pull_backoff = pull_backoff
        self.token = secrets.token_hex(16)
        self.model = ClusterModel(history_limit)
        self.kubelet: Kubelet | None = None
        self.requests: list[tuple[str, str, str]] = []
        self.warnings: list[str] = []

    def on_start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.kubelet = Kubelet(self.model, self.nodes, self.step,
                               insecure_registries=self.insecure_registries,
                               pull_backoff=self.pull_backoff)

    def on_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.kubelet.shutdown()

    # ---- control, on the simulation's loop --------------------------------------------

    def call(self, function: Callable[..., Any], *args, timeout: float = 10) -> Any:
        """Run ``function(*args)`` on the simulation's loop and return its result (awaited,
        when it is a coroutine)."""

        async def run():
            result = function(*args)
            return await result if asyncio.iscoroutine(result) else result

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    @property
    def cluster_id(self) -> str:
        """The label value that marks this cluster's podman pods and volumes."""
        return self.kubelet.cluster

    def objects(self, plural: str, namespace: str = "default") -> dict[str, dict]:
        """A copy of the stored objects of one kind, by name."""
        return self.call(
            lambda: {
                name: copy.deepcopy(obj)
                for (ns, name), obj in self.model.objects[plural].items()
                if ns == namespace
            }
        )

    def events_for(self, name: str, namespace: str = "default") -> list[tuple[str, str, str]]:
        """(type, reason, message) of every event about the object ``name``, oldest first."""
        events = self.objects("events", namespace).values()
        return [
            (e["type"], e["reason"], e["message"])
            for e in sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))
            if e["involvedObject"]["name"] == name
        ]

    def watch_history(self, plural: str, name: str) -> list[tuple[str, str | None]]:
        """(watch event type, pod phase) of every change to the object ``name``."""
        return self.call(
            lambda: [
                (event.type, (event.object.get("status") or {}).get("phase"))
                for event in self.model.history
                if event.plural == plural and event.object["metadata"]["name"] == name
            ]
        )

    def kill(self, name: str, namespace: str = "default") -> None:
        """SIGKILL the pod's server process in its container (exit status 137)."""
        self.call(self.kubelet.kill, namespace, name, timeout=60)

    def add_namespace(self, name: str) -> None:
        self.call(self.model.namespaces.add, name)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for this cluster, as `kubectl config view --raw` would write it."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kiosk-sim", "cluster": {"server": self.url}}],
            "users": [{"name": "kioskhub", "user": {"token": self.token}}],
            "contexts": [{"name": "kiosk-sim", "context": {"cluster": "kiosk-sim",
                                                           "user": "kioskhub",
                                                           "namespace": namespace}}],
            "current-context": "kiosk-sim",
        }
        path.touch(mode=0o600)  # the token runs pods with root's podman: for the hub alone
        path.chmod(0o600)
        path.write_text(yaml.safe_dump(config))
        return path
