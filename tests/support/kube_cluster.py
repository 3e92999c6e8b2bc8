"""A KioskKubeSpawner wired to the Kubernetes API simulation, as a hub would run it.

The spawner finds the cluster the way a hub outside the cluster does: through the
kubeconfig that ``KUBECONFIG`` names. kubernetes_asyncio reads that variable when it is
imported, so ``use_kubeconfig`` also points its default location at the file (what setting
``KUBECONFIG`` before starting the hub achieves), and forgets KubeSpawner's cached
client configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jupyterhub.objects import Hub
from kubernetes_asyncio.config import kube_config
from kubespawner.clients import load_config

from kioskhub.hub.schema.site import Site
from kioskhub.spawner.kube import KioskKubeSpawner


def use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    load_config.cache_clear()


@dataclass
class Group:
    name: str


@dataclass
class HubUser:
    """The parts of JupyterHub's User that a spawner reads."""

    name: str
    groups: list[Group] = field(default_factory=list)
    id: int = 1
    auth_state: dict | None = None
    admin: bool = False

    async def get_auth_state(self) -> dict | None:
        return self.auth_state

    @property
    def url(self) -> str:
        return f"/user/{self.name}/"

    @property
    def escaped_name(self) -> str:
        return self.name


def kube_spawner(
    site: Site, username: str, groups=(), options=None, auth_state=None, **traits
) -> KioskKubeSpawner:
    """A spawner for ``username``'s default server, with the hub's usual settings."""
    spawner = KioskKubeSpawner(
        user=HubUser(username, [Group(g) for g in groups], auth_state=auth_state),
        hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
        site=site,
        api_token=f"token-of-{username}",
        oauth_client_id=f"jupyterhub-user-{username}",
        namespace=site.pods.namespace or "default",
        start_timeout=traits.pop("start_timeout", 30),
        **traits,
    )
    spawner.user_options = dict(options or {})
    return spawner
