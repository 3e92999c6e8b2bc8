"""The Helm chart's values: ``kioskhub.yaml`` itself under ``site``, beside the deployment keys.

The deployment keys say how the platform runs in the cluster (images, replicas, resources,
ingress, storage, network policy); ``site`` is exactly what ``kioskhub.yaml`` holds and is
validated by the same models. ``helm/kioskhub/values.schema.json`` is generated from
``ChartValues`` (``python -m kioskhub.hub.helm_schema --write``), so ``helm lint`` and
``helm install`` refuse what ``kioskhub check-config`` refuses, naming the same key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .section import Section
from .site import Site

Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")]
"""A Kubernetes resource quantity: 500m, 2, 512Mi, 4Gi."""


class Image(Section):
    repository: str = Field(
        "localhost/kioskhub-hub",
        min_length=1,
        description="Image of the hub, the proxy, the Dask gateway and its controller: "
        "KioskHub's own image, built from the repository's Containerfile.",
    )
    tag: str = Field(
        "latest", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", description="The image's tag."
    )
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        "IfNotPresent", description="When the kubelet pulls the image."
    )


class Resources(Section):
    cpu: Quantity = Field("100m", description="CPU requested (and the limit's floor), e.g. 500m.")
    memory: Quantity = Field("256Mi", description="Memory requested and its limit, e.g. 1Gi.")
    cpu_limit: Quantity | None = Field(None, description="CPU limit; empty means no limit.")


class HubDeployment(Section):
    resources: Resources = Field(
        Resources(cpu="200m", memory="1Gi"), description="The hub container's resources."
    )
    state_size: Quantity = Field(
        "10Gi", description="Size of the hub's state claim (database, secrets, catalog)."
    )
    storage_class: str | None = Field(
        None, description="StorageClass of the hub's state claim; empty: the cluster's default."
    )
    env_from_secret: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="A Secret whose keys become the hub's environment variables: what the "
        "site names by variable, such as auth.oidc.client_secret_env's.",
    )
    disruption_budget: bool = Field(
        False,
        description="A PodDisruptionBudget that keeps a node drain from evicting the hub "
        "(one replica) and the proxy while user servers depend on them; a cluster upgrade "
        "then waits until they are moved on purpose (docs/kubernetes.md).",
    )


class ProxyDeployment(Section):
    replicas: int = Field(
        1,
        ge=1,
        le=1,
        description="configurable-http-proxy keeps its routes in memory, so it runs as one "
        "replica; the hub restores them when it restarts.",
    )
    resources: Resources = Field(Resources(), description="The proxy container's resources.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP",
        description="How the proxy's public Service is exposed; ClusterIP with an ingress, "
        "LoadBalancer on a cloud (Magnum's Octavia).",
    )


class Ingress(Section):
    enabled: bool = Field(False, description="Make an Ingress for the hub's public URL.")
    class_name: str | None = Field(None, description="IngressClass, e.g. nginx or traefik.")
    host: str = Field(
        "",
        pattern=r"^$|^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="Host name; empty: the host of site.hub.url.",
    )
    tls_secret: str | None = Field(
        None, description="Secret that holds the host's TLS certificate; empty: plain HTTP."
    )
    annotations: dict[str, str] = Field({}, description="Annotations of the Ingress.")


class UserEgress(Section):
    cidr: str = Field(
        pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$",
        description="Addresses user servers may reach, e.g. 10.0.0.0/8 or 0.0.0.0/0.",
    )
    except_cidrs: tuple[str, ...] = Field((), description="Addresses within cidr to leave out.")
    ports: tuple[int, ...] = Field(
        (), description="TCP ports allowed there; empty means every port."
    )


class NetworkPolicySettings(Section):
    enabled: bool = Field(
        True,
        description="NetworkPolicies: user servers reach the hub, the proxy, DNS, the Dask "
        "gateway when on, and only what user_egress allows.",
    )
    user_egress: tuple[UserEgress, ...] = Field(
        (),
        description="What else user servers may reach: package registries, the data "
        "servers, the internet (0.0.0.0/0 with the cluster's own range left out).",
    )
    dns_port: int = Field(53, ge=1, le=65535, description="Port of the cluster's DNS.")


class DaskGatewayDeployment(Section):
    resources: Resources = Field(Resources(), description="The gateway's resources.")
    controller_resources: Resources = Field(
        Resources(), description="The gateway controller's resources."
    )
    traefik_image: str = Field(
        "traefik:3.1", min_length=1, description="Traefik, the proxy in front of the clusters."
    )


class DeploymentValues(Section):
    """The chart's values besides ``site``: how the platform runs in the cluster."""

    image: Image = Field(Image(), description="KioskHub's own image.")
    image_pull_secrets: tuple[str, ...] = Field((), description="Secrets to pull images with.")
    hub: HubDeployment = Field(HubDeployment(), description="The hub's Deployment.")
    proxy: ProxyDeployment = Field(ProxyDeployment(), description="configurable-http-proxy.")
    dask_gateway: DaskGatewayDeployment = Field(
        DaskGatewayDeployment(),
        description="Dask Gateway on Kubernetes, deployed when site.dask.enabled.",
    )
    ingress: Ingress = Field(Ingress(), description="The Ingress of the hub's public URL.")
    network_policy: NetworkPolicySettings = Field(
        NetworkPolicySettings(), description="NetworkPolicies of every component."
    )


class ChartValues(DeploymentValues):
    """Everything the chart's values may say."""

    site: Site = Field(
        Site(),
        description="The site config: exactly what kioskhub.yaml holds "
        "(docs/configuration.md). spawner.backend becomes kubernetes in the cluster.",
    )
