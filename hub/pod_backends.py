"""Which spawner class runs the site's servers, and its settings: pure.

The local backend keeps its settings under ``KioskSpawner``; a pod backend gets the same
settings (the site, timeouts, token scopes that other parts add) under its own class, plus
what only it needs.
"""

from __future__ import annotations

from typing import Any

from kioskhub.hub.schema.site import Site

SPAWNER_CLASSES = {
    "local": "kioskhub.spawner.local_process.KioskSpawner",
    "podman": "kioskhub.spawner.podman.PodmanSpawner",
    "kubernetes": "kioskhub.spawner.kube.KioskKubeSpawner",
}


def with_spawner_backend(settings: dict[str, Any], site: Site) -> dict[str, Any]:
    """``settings`` (which configure ``KioskSpawner``) made to run ``site``'s backend."""
    backend = site.spawner.backend
    if backend == "local":
        return settings
    class_path = SPAWNER_CLASSES[backend]
    class_name = class_path.rpartition(".")[2]
    result = {name: dict(traits) for name, traits in settings.items()}
    result["JupyterHub"]["spawner_class"] = class_path
    result[class_name] = {**result.get("KioskSpawner", {}), **result.get(class_name, {})}
    result[class_name]["default_url"] = site.spawner.default_url
    if backend == "kubernetes" and site.pods.namespace:
        result[class_name]["namespace"] = site.pods.namespace
    if backend == "kubernetes" and site.pods.hub_connect_url:
        result[class_name]["hub_connect_url"] = site.pods.hub_connect_url.rstrip("/")
    return result
