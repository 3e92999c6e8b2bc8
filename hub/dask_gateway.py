"""Dask Gateway as a hub-managed service: pure builders from the Site.

- ``gateway_config``: the traitlets config of dask-gateway-server (written as JSON into the
  state folder at start, see ``write_gateway_config``);
- ``gateway_hub_settings``: the JupyterHub service, the role that lets users reach it and
  the scope that each server's token needs to use it;
- ``client_env`` lives in ``kioskhub.hub.schema.dask`` (a pure function of the Site): the
  environment that makes ``Gateway().new_cluster()`` work with no arguments in a user
  server, and points dask-labextension at the gateway.

The gateway's API and the clusters' dashboards are served under the hub's URL at
``/services/dask-gateway/`` (the hub's proxy forwards there to the gateway's own proxy);
schedulers are reached through the gateway's TLS proxy on a local port. Dashboards are
served to their cluster's owner only (``dask_dashboard_proxy``); their own ports refuse
requests without the cluster's key (``dask_dashboard_guard``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from kioskhub.hub.schema.dask import (
    SERVICE_NAME,
    SERVICE_PREFIX,
)
from kioskhub.hub.schema.site import Site

ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
SERVER_SCOPES = ("users:activity!user", "access:servers!server")
"""The scopes of JupyterHub's default 'server' role, which a server's token keeps."""

BACKENDS = "kioskhub.hub.dask_gateway_backend"
DASHBOARD_GUARD = "kioskhub.hub.dask_dashboard_guard"
"""The schedulers' preload that refuses dashboard requests without the cluster's key."""
CONFIG_FILE = "dask_gateway_config.json"


def gateway_folder(site: Site) -> Path:
    """The gateway's folder in the state folder: its config and the clusters' work folders."""
    return site.hub.state_dir / SERVICE_NAME


def servers_isolated(site: Site, euid: int) -> bool:
    """Whether user servers (and so clusters) run as per-user system accounts."""
    mode = site.spawner.isolation
    return mode == "system-users" or (mode == "auto" and euid == 0)


def profile_options(site: Site) -> list[dict[str, Any]]:
    """Each resource profile with the worker and cluster size of its Dask clusters."""
    options = []
    for profile in site.profiles:
        workers = site.dask.workers_for(profile.name)
        idle = workers.idle_timeout
        options.append(
            {
                "name": profile.name,
                "groups": list(profile.groups),
                "worker_cores": workers.worker_cores,
                "worker_memory": workers.worker_memory,
                "max_workers": workers.max_workers,
                "idle_timeout": site.dask.idle_timeout if idle is None else idle,
            }
        )
    return options


def default_profile(site: Site) -> str:
    return next((p.name for p in site.profiles if p.default), site.profiles[0].name)


def gateway_config(
    site: Site, *, isolated: bool, own_prefix: Path, site_file: Path | None = None
) -> dict[str, Any]:
    """The traitlets config (class name → {trait: value}) of dask-gateway-server for ``site``.

    Clusters run as the users' system accounts when ``isolated``, else as the gateway's own
    account; their processes come from KioskHub's own environment at ``own_prefix``, or
    from an environment the user may launch, as the gateway reads them from ``site_file``
    (the site config ``site`` was read from).
    """
    dask = site.dask
    ports = dask.ports
    limits = dask.user_limits
    backend = "KioskLocalBackend" if isolated else "KioskSharedLocalBackend"
    bin_dir = own_prefix / "bin"
    return {
        "DaskGateway": {
            "address": f"127.0.0.1:{ports.api}",
            "backend_class": f"{BACKENDS}.{backend}",
            "authenticator_class": f"{BACKENDS}.KioskHubAuthenticator",
            "log_level": site.hub.log_level,
        },
        "Proxy": {
            "address": f"127.0.0.1:{ports.http}",
            "tcp_address": f"127.0.0.1:{ports.scheduler_proxy}",
            "prefix": SERVICE_PREFIX,
        },
        "KioskHubAuthenticator": {"allowed_groups": list(dask.groups)},
        "KioskBackend": {
            "profiles": profile_options(site),
            "default_profile": default_profile(site),
            "max_clusters": limits.max_clusters,
            "max_cores": limits.max_cores,
            "max_memory": limits.max_memory,
            "clusters_directory": str(gateway_folder(site) / "clusters"),
            "account_prefix": site.spawner.system_user_prefix,
            "homes_directory": str(site.home.root),
            "site_config": str(site_file or ""),
        },
        "ClusterConfig": {
            "scheduler_cmd": [str(bin_dir / "dask"), "scheduler", "--preload", DASHBOARD_GUARD],
            "worker_cmd": [str(bin_dir / "dask"), "worker"],
            "scheduler_cores": dask.scheduler.cores,
            "scheduler_memory": dask.scheduler.memory,
            "idle_timeout": float(dask.idle_timeout),
        },
    }


def gateway_hub_settings(site: Site, *, python: str) -> dict[str, Any]:
    """The JupyterHub settings that run the gateway as a service, or {} when it is off.

    The gateway checks each request with the caller's own token (``GET /hub/api/user``),
    so its own token needs no scope. Users need ``access:services!service=dask-gateway``
    (granted to every user; the gateway itself refuses users outside ``dask.groups`` with
    a message), and each server's token carries it so that code in the server can call
    the gateway.

    Browsers sign in to dashboards with the hub's OAuth (``dask_dashboard_login``): the
    gateway is the OAuth client ``service-dask-gateway``, its tokens may only reach the
    gateway and identify their user, and, as a part of the hub, it asks no confirmation.
    """
    if not site.dask.enabled:
        return {}
    folder = gateway_folder(site)
    return {
        "JupyterHub": {
            "services": [
                {
                    "name": SERVICE_NAME,
                    "url": f"http://127.0.0.1:{site.dask.ports.http}",
                    "command": [
                        python,
                        "-m",
                        "dask_gateway_server",
                        "--config",
                        str(folder / CONFIG_FILE),
                    ],
                    "cwd": str(folder),
                    "display": False,
                    "oauth_client_id": f"service-{SERVICE_NAME}",
                    "oauth_redirect_uri": f"{SERVICE_PREFIX}/oauth_callback",
                    "oauth_client_allowed_scopes": [],
                    "oauth_no_confirm": True,
                }
            ],
            "load_roles": [{"name": "user", "scopes": ["self", ACCESS_SCOPE]}],
        },
        "KioskSpawner": {"server_token_scopes": [*SERVER_SCOPES, ACCESS_SCOPE]},
    }


MERGED_DICTS = ("template_vars", "tornado_settings", "custom_scopes")


def merge_settings(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` added: lists are extended (a string already there is not
    added twice, so two services may each give the servers' token scopes with their own),
    a role given twice (by name) gets the scopes of both, and ``template_vars``,
    ``tornado_settings`` and ``custom_scopes`` are merged key by key."""
    merged = {name: dict(traits) for name, traits in base.items()}
    for class_name, traits in extra.items():
        target = merged.setdefault(class_name, {})
        for trait, value in traits.items():
            if trait == "load_roles":
                target[trait] = _merge_roles(target.get(trait, []), value)
            elif isinstance(value, list) and isinstance(target.get(trait), list):
                new = [v for v in value if not (isinstance(v, str) and v in target[trait])]
                target[trait] = [*target[trait], *new]
            elif trait in MERGED_DICTS and isinstance(target.get(trait), dict):
                target[trait] = {**target[trait], **value}
            else:
                target[trait] = value
    return merged


def _merge_roles(roles: list[dict], extra: list[dict]) -> list[dict]:
    merged = [dict(role) for role in roles]
    for role in extra:
        same = next((r for r in merged if r["name"] == role["name"]), None)
        if same is None:
            merged.append(dict(role))
        else:
            scopes = same.get("scopes", [])
            same["scopes"] = [*scopes, *(s for s in role.get("scopes", []) if s not in scopes)]
    return merged


def write_gateway_config(
    site: Site, *, euid: int | None = None, site_file: Path | None = None
) -> Path | None:
    """Write the gateway's config into the state folder; None when the gateway is off.

    ``site_file``: the site config ``site`` was read from, which the gateway reads to check
    the environments that clusters run in.
    """
    if not site.dask.enabled:
        return None
    folder = gateway_folder(site)
    clusters = folder / "clusters"
    clusters.mkdir(parents=True, exist_ok=True)
    for path in (folder, clusters):
        os.chmod(path, 0o711)
    config = gateway_config(
        site,
        isolated=servers_isolated(site, os.geteuid() if euid is None else euid),
        own_prefix=Path(sys.prefix),
        site_file=site_file,
    )
    path = folder / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path
