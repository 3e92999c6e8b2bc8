"""The simulated Kubernetes API server, running on 127.0.0.1 at a random port.

It runs in a thread with its own event loop, so tests (and the hub code under test, on
their own loop) talk to it over HTTP only, through kubernetes_asyncio as KubeSpawner does.
``write_kubeconfig`` writes the kubeconfig a client needs (server URL and bearer token).
Control methods (``terminate``, ``add_namespace``, ``missing_images``) run on the
simulation's loop and return once done.
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


class KubernetesSimulation(ThreadedAPI):
    """Start with ``with KubernetesSimulation() as cluster:``; ``cluster.url`` is its URL."""

    name = "Kubernetes simulation"
    routes = ROUTES
    not_found = NotFoundHandler

    def __init__(self, *, step: float = 0.05, nodes=DEFAULT_NODES, history_limit: int = 1000):
        super().__init__()
        self.step = step
        self.nodes = nodes
        self.token = secrets.token_hex(16)
        self.model = ClusterModel(history_limit)
        self.kubelet: Kubelet | None = None
        self.requests: list[tuple[str, str, str]] = []
        self.warnings: list[str] = []

    def on_start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.kubelet = Kubelet(self.model, self.nodes, self.step)

    def on_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.kubelet.stop_containers()

    # ---- control, on the simulation's loop --------------------------------------------

    def call(self, function: Callable[..., Any], *args) -> Any:
        """Run ``function(*args)`` on the simulation's loop and return its result."""

        async def run():
            return function(*args)

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

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

    def terminate(self, name: str, exit_code: int, namespace: str = "default") -> None:
        self.call(self.kubelet.terminate, namespace, name, exit_code)

    def add_namespace(self, name: str) -> None:
        self.call(self.model.namespaces.add, name)

    def image_missing(self, image: str) -> None:
        self.call(self.kubelet.missing_images.add, image)

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
        path.write_text(yaml.safe_dump(config))
        return path
