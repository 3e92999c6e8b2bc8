"""The hub's settings in a Kubernetes cluster (the Helm chart): pure.

The chart runs KioskHub's own JupyterHub config (``jupyterhub_config.py``) and then this:
the proxy is a Deployment of its own (the hub does not start it, and reaches its API by
the Service), the hub listens on every address of its pod for the proxy and the servers,
and Dask Gateway runs as the chart's Deployments (``dask_gateway_kube``), so its service
entry points at the gateway's Traefik (which passes the API to the gateway and each
dashboard to its scheduler) and carries the token from the chart's Secret instead of a
command. Everything else (authenticator, spawner, workshop and gallery
services, roles) is the same as on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kioskhub.hub.schema.dask import client_env
from kioskhub.hub.schema.site import Site

from .dask_gateway import SERVICE_NAME as GATEWAY_SERVICE
from .dask_gateway_kube import kube_gateway_addresses


@dataclass(frozen=True)
class ClusterAddresses:
    """Where the hub's parts are reached inside the cluster (the chart's Services)."""

    hub_host: str
    proxy_api_url: str
    gateway_url: str = ""
    """The gateway's Traefik, e.g. ``http://kh-dask-traefik``; empty when Dask is off."""
    gateway_token: str = ""


def cluster_hub_settings(
    site: Site, services: list[dict[str, Any]], addresses: ClusterAddresses
) -> dict[str, Any]:
    """Settings to apply over KioskHub's own for a hub in a cluster.

    ``services`` is ``c.JupyterHub.services`` as KioskHub's config set it.
    """
    settings: dict[str, Any] = {
        "JupyterHub": {
            "hub_ip": "0.0.0.0",
            "hub_connect_ip": addresses.hub_host,
            "services": [_in_cluster(service, site, addresses) for service in services],
        },
        "ConfigurableHTTPProxy": {"should_start": False, "api_url": addresses.proxy_api_url},
    }
    if site.dask.enabled and addresses.gateway_url:
        gateway = kube_gateway_addresses(site, addresses.gateway_url)
        default = next((p.name for p in site.profiles if p.default), site.profiles[0].name)
        settings["KioskKubeSpawner"] = {"environment": client_env(site, default, gateway)}
    return settings


def _in_cluster(service: dict[str, Any], site: Site, addresses: ClusterAddresses) -> dict[str, Any]:
    if service.get("name") != GATEWAY_SERVICE or not addresses.gateway_url:
        return service
    moved = {key: value for key, value in service.items() if key not in ("command", "cwd")}
    return {**moved, "url": addresses.gateway_url, "api_token": addresses.gateway_token}
