"""The ``dask:`` section of the site config: scale-out through Dask Gateway.

Worker sizes and the maximum cluster size are set per resource profile (a user's
server profile is their clusters' default), per-user limits hold across all of a
user's clusters, and ``groups`` can reserve the gateway for some JupyterHub groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from .choices import ByteSize, Name
from .section import Section

if TYPE_CHECKING:
    from .site import Site

SERVICE_NAME = "dask-gateway"
SERVICE_PREFIX = f"/services/{SERVICE_NAME}"


class DaskWorkers(Section):
    """Worker size and cluster size for clusters of one resource profile."""

    worker_cores: int = Field(1, ge=1, le=256, description="CPU cores of each worker.")
    worker_memory: ByteSize = Field(
        2 * 10**9, description="Memory of each worker, e.g. 2G or 4GiB."
    )
    max_workers: int = Field(4, ge=0, le=10_000, description="Most workers one cluster may have.")
    idle_timeout: int | None = Field(
        None,
        ge=0,
        description="Seconds after which an idle cluster of this profile is shut down; "
        "empty means dask.idle_timeout.",
    )


class _ProfileName(Section):
    name: Name = Field(description="Name of a resource profile (see profiles[].name).")


class DaskProfile(DaskWorkers, _ProfileName):
    """Worker and cluster size for the clusters of the resource profile ``name``."""


class DaskScheduler(Section):
    cores: int = Field(1, ge=1, le=64, description="CPU cores counted for each scheduler.")
    memory: ByteSize = Field(10**9, description="Memory counted for each scheduler, e.g. 1G.")


class DaskUserLimits(Section):
    max_clusters: int | None = Field(
        2, ge=0, description="Most clusters one user may run at once; empty means no limit."
    )
    max_cores: float | None = Field(
        None,
        gt=0,
        description="Most CPU cores (schedulers and workers) of all of one user's clusters "
        "together; empty means no limit.",
    )
    max_memory: ByteSize | None = Field(
        None,
        description="Most memory (schedulers and workers) of all of one user's clusters "
        "together, a size like 16G; empty means no limit.",
    )


class DaskPorts(Section):
    http: int = Field(
        8082,
        ge=1,
        le=65535,
        description="Port of the gateway's HTTP proxy (API and dashboards); the hub's "
        "proxy forwards /services/dask-gateway/ here.",
    )
    scheduler_proxy: int = Field(
        8083, ge=1, le=65535, description="Port of the gateway's TLS proxy to schedulers."
    )
    api: int = Field(8084, ge=1, le=65535, description="Port of the gateway's private API.")


class DaskSettings(Section):
    enabled: bool = Field(
        False,
        description="Run Dask Gateway as a hub service, so that "
        "`dask_gateway.Gateway().new_cluster()` works in every server.",
    )
    groups: tuple[str, ...] = Field(
        (), description="JupyterHub groups that may use the gateway; empty means everyone."
    )
    idle_timeout: int = Field(
        1800,
        ge=0,
        description="Seconds after which a cluster with no work is shut down; 0 means never.",
    )
    workers: DaskWorkers = Field(
        DaskWorkers(), description="Worker and cluster size for profiles not listed below."
    )
    profiles: tuple[DaskProfile, ...] = Field(
        (),
        description="Worker and cluster size per resource profile; keys left out come "
        "from dask.workers.",
    )
    scheduler: DaskScheduler = Field(
        DaskScheduler(), description="What each cluster's scheduler counts against the limits."
    )
    user_limits: DaskUserLimits = Field(
        DaskUserLimits(),
        description="Dask's own limits on all of one user's clusters together, clusters "
        "only; quotas: counts a user's servers and clusters together, and a cluster must "
        "fit both.",
    )
    ports: DaskPorts = Field(
        DaskPorts(), description="Ports on 127.0.0.1 that the gateway listens on."
    )

    @model_validator(mode="after")
    def _distinct(self) -> DaskSettings:
        names = [p.name for p in self.profiles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"profiles: names must be unique; repeated: {', '.join(dupes)}")
        ports = [self.ports.http, self.ports.scheduler_proxy, self.ports.api]
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports: http, scheduler_proxy and api must differ, got {ports}")
        return self

    def workers_for(self, profile: str) -> DaskWorkers:
        """Worker settings of the resource profile named ``profile``: the keys that its
        entry in ``profiles`` sets, the others from ``workers``."""
        entry = next((p for p in self.profiles if p.name == profile), None)
        if entry is None:
            return self.workers
        given = {key: getattr(entry, key) for key in entry.model_fields_set if key != "name"}
        return self.workers.model_copy(update=given)


def unknown_dask_profiles(dask: DaskSettings, profile_names: list[str]) -> list[str]:
    """Names under ``dask.profiles`` that are not resource profiles of the site."""
    return [p.name for p in dask.profiles if p.name not in profile_names]


@dataclass(frozen=True)
class GatewayAddresses:
    """Where the gateway is reached: from servers, from browsers, and for schedulers."""

    internal: str
    public: str
    scheduler_proxy: str


def gateway_addresses(site: Site) -> GatewayAddresses:
    ports = site.dask.ports
    return GatewayAddresses(
        internal=f"http://127.0.0.1:{ports.http}{SERVICE_PREFIX}",
        public=f"{site.hub.url}{SERVICE_PREFIX}",
        scheduler_proxy=f"gateway://127.0.0.1:{ports.scheduler_proxy}",
    )


def client_env(
    site: Site,
    profile: str,
    addresses: GatewayAddresses | None = None,
    *,
    environment: str | None = None,
) -> dict[str, str]:
    """Environment of a user server: dask-gateway's client config and dask-labextension's.

    The user's server profile becomes the default ``profile`` option of new clusters, and
    the server's ``environment`` (its name) the default ``environment`` option: the gateway
    runs the cluster in it once it has checked that the user may launch it.
    ``addresses`` default to the embedded gateway's.
    """
    if not site.dask.enabled:
        return {}
    addresses = addresses or gateway_addresses(site)
    options = {"PROFILE": profile, **({"ENVIRONMENT": environment} if environment else {})}
    return {
        "DASK_GATEWAY__ADDRESS": addresses.internal,
        "DASK_GATEWAY__PUBLIC_ADDRESS": addresses.public,
        "DASK_GATEWAY__PROXY_ADDRESS": addresses.scheduler_proxy,
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        **{
            f"DASK_GATEWAY__CLUSTER__OPTIONS__{key}": dask_config_string(value)
            for key, value in options.items()
        },
        "DASK_LABEXTENSION__FACTORY__MODULE": "dask_gateway",
        "DASK_LABEXTENSION__FACTORY__CLASS": "GatewayCluster",
    }


def dask_config_string(value: str) -> str:
    """``value`` as a variable that dask's config reads back as this string.

    Dask reads each ``DASK_*`` variable as a Python literal where it can: a name like
    ``2024`` would come back as a number, which the gateway refuses as an option.
    """
    return repr(value)
