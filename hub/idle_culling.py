"""Idle culling as a hub-managed service: the pure settings that run jupyterhub-idle-culler.

The culler (``kioskhub.hub.idle_culler_profiles``) holds a role of its own with only what
it needs to find and stop servers: ``list:users`` and ``read:users:activity`` to page
through users and their last activity, ``read:servers`` to see each server's start, last
activity and chosen profile, and ``delete:servers`` to stop one. It cannot delete users,
read their tokens or start anything. Stopping goes through the spawner's own ``stop``,
which stops the user's Dask clusters too.
"""

from __future__ import annotations

import json
from typing import Any

from kioskhub.hub.schema.site import Site

from .idle_culler_profiles import LIMITS_VARIABLE

SERVICE_NAME = "idle-culler"
SERVICE_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
CULLER_MODULE = "kioskhub.hub.idle_culler_profiles"


def culling_limits(site: Site) -> dict[str, Any]:
    """What the culler is handed: the default profile and each profile's limits."""
    culling = site.culling
    default = next((p.name for p in site.profiles if p.default), site.profiles[0].name)
    return {
        "default_profile": default,
        "profiles": {
            p.name: [culling.limits_for(p.name).timeout, culling.limits_for(p.name).max_age]
            for p in site.profiles
        },
    }


def culling_hub_settings(site: Site, *, python: str) -> dict[str, Any]:
    """The JupyterHub settings that run the culler as a service, or {} when culling is off."""
    culling = site.culling
    if not culling.enabled:
        return {}
    return {
        "JupyterHub": {
            "services": [
                {
                    "name": SERVICE_NAME,
                    "command": [
                        python,
                        "-m",
                        CULLER_MODULE,
                        f"--timeout={culling.timeout}",
                        f"--max-age={culling.max_age}",
                        f"--cull-every={culling.every}",
                        "--cull-users=False",
                        "--remove-named-servers=False",
                    ],
                    "environment": {
                        LIMITS_VARIABLE: json.dumps(culling_limits(site), sort_keys=True)
                    },
                    "cwd": str(site.hub.state_dir),
                    "display": False,
                }
            ],
            "load_roles": [
                {
                    "name": "kioskhub-idle-culler",
                    "description": "Stops idle servers: lists users and stops their servers",
                    "services": [SERVICE_NAME],
                    "scopes": SERVICE_SCOPES,
                }
            ],
        }
    }
