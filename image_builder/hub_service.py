"""The builder as a JupyterHub service: the hub settings that run it, and what it is handed.

Hub-managed: the hub starts ``python -m kioskhub.image_builder.service`` with its API token and
OAuth
client, and proxies ``/services/environments/``. The service's own token may only read user
names, admin flags and groups (``read:users:name``, ``read:users:groups``) and users'
authentication state (``admin:auth_state``: read-only; it holds the GitLab token of a user
signed in with GitLab, which the service reads for the user who asks for a build of a
private repository, and no other change to users); every user may access the service
(``access:services!service=environments``), which decides per handler what each user may do.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kioskhub.hub.schema.site import Site

from .build_sandbox import NETWORK_VARIABLES

SERVICE_NAME = "environments"
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
SERVICE_SCOPES = ["read:users:name", "read:users:groups", "admin:auth_state"]
SITE_VARIABLE = "KIOSKHUB_SITE_JSON"
PINNED_BUILDS_SCOPE = "custom:environments:pinned-builds"
"""Ask for a pinned build (``pinned_builds_api``): held by the gallery's token alone."""


def builder_hub_settings(site: Site, *, python: str) -> dict[str, Any]:
    """The JupyterHub settings that run the builder service, or {} when builds are off."""
    if not site.builder.enabled:
        return {}
    return {
        "JupyterHub": {
            "services": [
                {
                    "name": SERVICE_NAME,
                    "url": f"http://127.0.0.1:{site.builder.port}",
                    "command": [python, "-m", "kioskhub.image_builder.service"],
                    "environment": {
                        SITE_VARIABLE: site_json(site),
                        **network_environment(),
                        **gitlab_token_environment(site),
                    },
                    "cwd": str(site.hub.state_dir),
                    "oauth_no_confirm": True,
                    "display": True,
                }
            ],
            "load_roles": [
                {"name": "user", "scopes": ["self", ACCESS_SCOPE]},
                {
                    "name": "kioskhub-environments",
                    "description": (
                        "The environment builder: who a user is, their groups, sign-in tokens"
                    ),
                    "services": [SERVICE_NAME],
                    "scopes": SERVICE_SCOPES,
                },
            ],
        }
    }


def gitlab_token_environment(site: Site) -> dict[str, str]:
    """Hand the GitLab token, named by ``gitlab.api_token_env``, on to the service."""
    name = site.gitlab.api_token_env
    return {name: os.environ[name]} if site.gitlab.url and os.environ.get(name) else {}


def network_environment() -> dict[str, str]:
    """How this machine reaches package indexes (CA bundles, proxies, mirrors): the hub does
    not pass its environment to services, and builds need these."""
    return {name: os.environ[name] for name in NETWORK_VARIABLES if os.environ.get(name)}


def site_json(site: Site) -> str:
    """The site as the service gets it: everything but the sign-in passwords."""
    return site.model_dump_json(exclude={"auth"})


def site_from_json(text: str) -> Site:
    return Site.model_validate(json.loads(text))
