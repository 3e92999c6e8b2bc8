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
    "openstack": "kioskhub.spawner.openstack.OpenStackSpawner",
}


BURSTING_CLASS = "kioskhub.spawner.bursting.BurstingSpawner"


def backends_in_use(site: Site) -> list[str]:
    """``spawner.backend`` and every backend a profile lists, in that order, once each."""
    found = [site.spawner.backend]
    for profile in site.profiles:
        found += [backend for backend in profile.backends if backend not in found]
    return found


def with_spawner_backend(settings: dict[str, Any], site: Site) -> dict[str, Any]:
    """``settings`` (which configure ``KioskSpawner``) made to run ``site``'s backends: the
    spawner class of ``spawner.backend``, or, where a profile lists backends (cloud
    bursting), ``BurstingSpawner`` with the class of each backend it hands starts to."""
    result = {name: dict(traits) for name, traits in settings.items()}
    for backend in backends_in_use(site):
        class_name = SPAWNER_CLASSES[backend].rpartition(".")[2]
        if backend != "local":
            result[class_name] = {**result.get("KioskSpawner", {}), **result.get(class_name, {})}
            result[class_name]["default_url"] = site.spawner.default_url
        if backend == "kubernetes" and site.pods.namespace:
            result[class_name]["namespace"] = site.pods.namespace
        if backend == "kubernetes" and site.pods.hub_connect_url:
            result[class_name]["hub_connect_url"] = site.pods.hub_connect_url.rstrip("/")
        if backend == "openstack":
            result[class_name]["start_timeout"] = site.openstack.boot_timeout + 60
    if site.bursts():
        classes = {backend: SPAWNER_CLASSES[backend] for backend in backends_in_use(site)}
        result["JupyterHub"]["spawner_class"] = BURSTING_CLASS
        result["BurstingSpawner"] = {
            "site": site,
            "spawner_classes": classes,
            "start_timeout": max(
                result[c.rpartition(".")[2]].get("start_timeout", 60) for c in classes.values()
            ),
            "http_timeout": result["KioskSpawner"].get("http_timeout", 30),
        }
    elif site.spawner.backend != "local":
        result["JupyterHub"]["spawner_class"] = SPAWNER_CLASSES[site.spawner.backend]
    return with_hub_reachable_from_vms(result, site)


QEMU_HOST_ALIAS = "10.0.2.2"
"""The address at which a VM on qemu's user network reaches its host's loopback."""


def with_hub_reachable_from_vms(settings: dict[str, Any], site: Site) -> dict[str, Any]:
    """Where a server may run on OpenStack, the hub's API listens on every address, so that
    VMs reach it at ``openstack.hub_address`` (its API still needs a token); the proxy and the
    hub's own parts keep connecting on loopback. A VM that reaches the host's loopback
    (qemu's 10.0.2.2) needs no change."""
    in_use = any("openstack" in site.profile_backends(p) for p in site.profiles)
    if not in_use or site.openstack.hub_address == QEMU_HOST_ALIAS:
        return settings
    port = site.hub.internal_ports.hub
    hub = dict(settings["JupyterHub"])
    hub.pop("hub_ip", None)
    hub.pop("hub_port", None)
    hub["hub_bind_url"] = f"http://0.0.0.0:{port}"
    hub["hub_connect_url"] = f"http://127.0.0.1:{port}"
    return {**settings, "JupyterHub": hub}
