"""The hub's settings in a Kubernetes cluster (the Helm chart): pure.

The chart runs KioskHub's own JupyterHub config (``jupyterhub_config.py``) and then this:
the proxy is a Deployment of its own (the hub does not start it, and reaches its API by
the Service), the hub listens on every address of its pod for the proxy and the servers,
its hub-managed services (environments, gallery) listen on the pod's address where the
proxy reaches them, servers find the gallery through the proxy,
and Dask Gateway runs as the chart's Deployments (``dask_gateway_kube``), so its service
entry points at the gateway's Traefik (which passes the API to the gateway and each
dashboard to its scheduler) and carries the token from the chart's Secret instead of a
command. Everything else (authenticator, spawner, workshop and gallery
services, roles) is the same as on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kioskhub.hub.schema.dask import client_env
from kioskhub.hub.schema.gallery import GALLERY_URL_ENV
from kioskhub.hub.schema.site import Site

from .dask_gateway import SERVICE_NAME as GATEWAY_SERVICE
from .dask_gateway_kube import kube_gateway_addresses

LOOPBACK = "127.0.0.1"
GATEWAY_ADDRESS_VARIABLES = (
    "DASK_GATEWAY__ADDRESS",
    "DASK_GATEWAY__PUBLIC_ADDRESS",
    "DASK_GATEWAY__PROXY_ADDRESS",
)
"""What the cluster changes of a server's Dask client settings: where the gateway is (the
options, such as the server's profile, stay the server's own)."""


@dataclass(frozen=True)
class ClusterAddresses:
    """Where the hub's parts are reached inside the cluster (the chart's Services)."""

    hub_host: str
    """The hub's Service, which servers and the gateway call."""
    pod_ip: str
    """The hub pod's own address: its hub-managed services listen there for the proxy."""
    proxy_api_url: str
    proxy_url: str
    """The proxy's public Service inside the cluster, e.g. ``http://kh-proxy-public``."""
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
            "services": [_in_cluster(service, addresses) for service in services],
        },
        "ConfigurableHTTPProxy": {"should_start": False, "api_url": addresses.proxy_api_url},
    }
    server_env: dict[str, str] = {}
    if site.dask.enabled and addresses.gateway_url:
        gateway = kube_gateway_addresses(site, addresses.gateway_url)
        default = next((p.name for p in site.profiles if p.default), site.profiles[0].name)
        env = client_env(site, default, gateway)
        server_env |= {name: env[name] for name in GATEWAY_ADDRESS_VARIABLES}
    if site.gallery.enabled:
        server_env[GALLERY_URL_ENV] = f"{addresses.proxy_url.rstrip('/')}/services/gallery/"
    if server_env:
        settings["KioskKubeSpawner"] = {"environment": server_env}
    return settings


def _in_cluster(service: dict[str, Any], addresses: ClusterAddresses) -> dict[str, Any]:
    """A service entry as the cluster runs it: the gateway at its Traefik; a hub-managed
    service on the hub pod's address instead of loopback, where the proxy reaches it."""
    if service.get("name") == GATEWAY_SERVICE and addresses.gateway_url:
        moved = {key: value for key, value in service.items() if key not in ("command", "cwd")}
        return {**moved, "url": addresses.gateway_url, "api_token": addresses.gateway_token}
    url = service.get("url")
    if url and "command" in service and urlsplit(url).hostname == LOOPBACK:
        return {**service, "url": url.replace(f"//{LOOPBACK}", f"//{addresses.pod_ip}", 1)}
    return service
