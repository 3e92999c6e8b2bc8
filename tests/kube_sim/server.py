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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from .api import ROUTES, NotFoundHandler
from .kubelet import DEFAULT_NODES, Kubelet
from .model import ClusterModel


class KubernetesSimulation:
    """Start with ``with KubernetesSimulation() as cluster:``; ``cluster.url`` is its URL."""

    def __init__(self, *, step: float = 0.05, nodes=DEFAULT_NODES, history_limit: int = 1000):
        self.step = step
        self.nodes = nodes
        self.token = secrets.token_hex(16)
        self.model = ClusterModel(history_limit)
        self.kubelet: Kubelet | None = None
        self.requests: list[tuple[str, str, str]] = []
        self.warnings: list[str] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self) -> KubernetesSimulation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> KubernetesSimulation:
        sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, args=(sockets,), daemon=True,
                                        name="kube-sim")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Kubernetes simulation did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, sockets) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self.kubelet = Kubelet(self.model, self.nodes, self.step)
        routes = [(pattern, handler, {"simulation": self}) for pattern, handler in ROUTES]
        application = Application(
            routes, default_handler_class=NotFoundHandler,
            default_handler_args={"simulation": self},
        )
        server = HTTPServer(application)
        server.add_sockets(sockets)
        self._ready.set()
        self._loop.run_forever()
        server.stop()
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
