"""Dask Gateway on Kubernetes: values for the upstream dask-gateway Helm chart.

Pure functions of the Site, for KioskHub's Helm chart (which depends on the dask-gateway
chart rather than copying it). The gateway pod runs KioskHub's own image, which holds
dask-gateway-server and ``kioskhub.hub.dask_gateway_backend``, so the cluster options per resource
profile and the group gate are the same classes as in the embedded default; the chart's
``KubeBackend`` starts the clusters. Per-user limits across clusters are a feature of the
local backend (``KioskBackend``); on Kubernetes, namespace quotas do that job.
"""

from __future__ import annotations

from typing import Any

from kioskhub.hub.schema.dask import GatewayAddresses, client_env
from kioskhub.hub.schema.site import Site

from .dask_gateway import (
    ACCESS_SCOPE,
    SERVER_SCOPES,
    SERVICE_NAME,
    SERVICE_PREFIX,
    default_profile,
    profile_options,
)

HUB_SECRET = "hub"
"""The Secret in which zero-to-jupyterhub keeps the tokens of the hub's services."""


def _image(reference: str) -> dict[str, str]:
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        raise ValueError(f"expected an image reference like registry/name:tag, got {reference!r}")
    return {"name": name, "tag": tag}


def _resources(cores: float, memory: int) -> dict[str, Any]:
    return {
        "cores": {"request": cores, "limit": cores},
        "memory": {"request": memory, "limit": memory},
    }


def kube_extra_config(site: Site) -> str:
    """Python for the chart's ``gateway.extraConfig``: KioskHub's options and group gate."""
    return (
        "from kioskhub.hub.dask_cluster_options import ProfileOptions\n"
        "c.DaskGateway.authenticator_class = "
        "'kioskhub.hub.dask_gateway_backend.KioskHubAuthenticator'\n"
        f"c.KioskHubAuthenticator.allowed_groups = {list(site.dask.groups)!r}\n"
        f"c.KubeBackend.cluster_options = ProfileOptions(\n"
        f"    {profile_options(site)!r},\n"
        f"    {default_profile(site)!r},\n"
        ")\n"
        f"c.KubeClusterConfig.idle_timeout = {float(site.dask.idle_timeout)!r}\n"
    )


def kube_gateway_values(
    site: Site, *, gateway_image: str, cluster_image: str, hub_api_url: str
) -> dict[str, Any]:
    """Values for the dask-gateway chart, installed beside zero-to-jupyterhub.

    ``gateway_image`` is KioskHub's image; ``cluster_image`` runs schedulers and workers
    (the default environment's image); ``hub_api_url`` is the hub's API inside the
    cluster, e.g. ``http://hub:8081/hub/api``.
    """
    dask = site.dask
    return {
        "gateway": {
            "prefix": SERVICE_PREFIX,
            "loglevel": site.hub.log_level,
            "image": _image(gateway_image),
            "auth": {
                "type": "jupyterhub",
                "jupyterhub": {
                    "apiUrl": hub_api_url,
                    "apiTokenFromSecretName": HUB_SECRET,
                    "apiTokenFromSecretKey": f"hub.services.{SERVICE_NAME}.apiToken",
                },
            },
            "backend": {
                "image": _image(cluster_image),
                "scheduler": _resources(dask.scheduler.cores, dask.scheduler.memory),
                "worker": _resources(dask.workers.worker_cores, dask.workers.worker_memory),
            },
            "extraConfig": {"kioskhub": kube_extra_config(site)},
        },
        "traefik": {"service": {"type": "ClusterIP"}},
    }


def kube_gateway_addresses(site: Site, gateway_url: str) -> GatewayAddresses:
    """Where servers in the cluster reach the gateway: the chart's traefik Service
    (``gateway_url``, e.g. ``http://traefik-dask-gateway``) for the API and schedulers,
    the hub's URL for browsers."""
    host = gateway_url.split("://", 1)[-1].rstrip("/")
    return GatewayAddresses(
        internal=f"{gateway_url.rstrip('/')}{SERVICE_PREFIX}",
        public=f"{site.hub.url}{SERVICE_PREFIX}",
        scheduler_proxy=f"gateway://{host if ':' in host else host + ':80'}",
    )


def kube_jupyterhub_values(site: Site, *, gateway_url: str, profile: str) -> dict[str, Any]:
    """The zero-to-jupyterhub values that register the gateway as a hub service and point
    servers of ``profile`` at it (KubeSpawner's profile list sets the profile per server)."""
    return {
        "hub": {
            "services": {SERVICE_NAME: {"url": gateway_url, "display": False}},
            "loadRoles": {"user": {"scopes": ["self", ACCESS_SCOPE]}},
            "config": {"Spawner": {"server_token_scopes": [*SERVER_SCOPES, ACCESS_SCOPE]}},
        },
        "singleuser": {
            "extraEnv": client_env(site, profile, kube_gateway_addresses(site, gateway_url)),
        },
    }
