"""Site → JupyterHub settings: a pure mapping from the site config to traitlets config."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.hub_service import builder_hub_settings
from kioskhub.image_builder.spawn_catalog import CatalogEnvironments, GitLabUserImages
from kioskhub.spawner.environment_kinds import BACKEND_KINDS
from kioskhub.spawner.fork_servers import ForkServers
from kioskhub.spawner.local_process import SERVER_EXTENSIONS
from kioskhub.spawner.pod_image import BaseImageRecipe

from .audit_pages import audit_hub_settings
from .auth_gitlab import gitlab_url
from .auth_settings import authenticator_settings
from .dask_gateway import gateway_hub_settings, merge_settings
from .gallery.hub_service import gallery_hub_settings
from .idle_culling import culling_hub_settings
from .metrics_access import metrics_hub_settings
from .oidc_discovery import ProviderEndpoints
from .pod_backends import with_spawner_backend
from .state_dir import Passwords
from .usage_pages import usage_hub_settings
from .workshop_broadcast import broadcast_hub_settings
from .workshop_collect_api import collect_hub_settings
from .workshop_join import join_hub_settings
from .workshop_pages import workshop_hub_settings
from .workshop_schedule import schedule_hub_settings

PROXY_NAME = "configurable-http-proxy"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def find_proxy_command() -> str | None:
    """configurable-http-proxy from PATH, else from the node_modules beside this venv.

    ``make up`` installs it into the checkout's node_modules and puts that on PATH; the
    fallback serves ``.venv/bin/kioskhub`` run by hand from the same checkout.
    """
    on_path = shutil.which(PROXY_NAME)
    if on_path:
        return on_path
    beside_venv = Path(sys.prefix).parent / "node_modules" / ".bin" / PROXY_NAME
    return str(beside_venv) if beside_venv.exists() else None


def jupyterhub_settings(
    site: Site,
    passwords: Passwords,
    proxy_command: str,
    oidc_endpoints: ProviderEndpoints | None = None,
) -> dict[str, Any]:
    """The traitlets config (class name → {trait: value}) that runs ``site``.

    ``oidc_endpoints``: the OIDC provider's, discovered at start-up (OIDC sign-in only).
    """
    state: Path = site.hub.state_dir
    ports = site.hub.internal_ports
    settings = {
        "JupyterHub": {
            "bind_url": site.hub.url + "/",
            "hub_ip": "127.0.0.1",
            "hub_port": ports.hub,
            "db_url": f"sqlite:///{state / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(state / "jupyterhub_cookie_secret"),
            "pid_file": str(state / "jupyterhub.pid"),
            "spawner_class": "kioskhub.spawner.local_process.KioskSpawner",
            "cleanup_servers": site.hub.cleanup_servers,
            "log_level": site.hub.log_level,
            "template_paths": [str(TEMPLATES)],
            "load_groups": {
                name: {"users": list(members)} for name, members in site.groups.items()
            },
        },
        "ConfigurableHTTPProxy": {
            "command": [proxy_command],
            "api_url": f"http://127.0.0.1:{ports.proxy_api}",
            "pid_file": str(state / "proxy.pid"),
        },
        "CryptKeeper": {"keys": [passwords.auth_state_key]} if passwords.auth_state_key else {},
        "Authenticator": {
            # Provider tokens and claims are kept encrypted with the state folder's key.
            "enable_auth_state": bool(passwords.auth_state_key),
            "auth_refresh_age": site.auth.refresh_age,
            "refresh_pre_spawn": True,
        },
        "KioskSpawner": {
            "site": site,
            "start_timeout": site.spawner.start_timeout,
            "http_timeout": site.spawner.http_timeout,
        },
    }
    settings = merge_settings(settings, authenticator_settings(site, passwords, oidc_endpoints))
    settings = merge_settings(settings, gateway_hub_settings(site, python=sys.executable))
    settings = merge_settings(settings, culling_hub_settings(site, python=sys.executable))
    settings = merge_settings(
        settings, builder_hub_settings(with_builder_base_image(site), python=sys.executable)
    )
    settings = merge_settings(settings, gallery_hub_settings(site, python=sys.executable))
    settings = merge_settings(settings, metrics_hub_settings(passwords.metrics_token))
    settings = merge_settings(settings, usage_hub_settings(state))
    settings = merge_settings(settings, audit_hub_settings(site))
    settings = merge_settings(settings, join_hub_settings(site))
    # Broadcast and collections before the event routes, which would take
    # /api/workshops/messages for an event named "messages".
    settings = merge_settings(settings, broadcast_hub_settings(site))
    settings = merge_settings(settings, collect_hub_settings(site))
    catalog = launchable_environments(site)
    # Teachers pick an event's environment among what the participants may launch.
    settings = merge_settings(settings, workshop_hub_settings(site, catalog))
    settings = merge_settings(settings, schedule_hub_settings(site, python=sys.executable))
    launchable = catalog
    if site.auth.type == "gitlab" and "image" in BACKEND_KINDS[site.spawner.backend]:
        # Beside those: the images the user's own GitLab projects built, with their token.
        launchable = GitLabUserImages(gitlab_url(site), launchable)
    if launchable is not None:
        # The spawner reads what a user may launch through this (in a thread, on demand).
        settings["KioskSpawner"]["environments_for_user"] = launchable
    fork_servers = hub_fork_servers(site)
    if fork_servers is not None:
        settings["KioskSpawner"]["fork_servers"] = fork_servers
    if site.auth.type == "gitlab":
        # GitLab's groups are the user's groups; the site's are added by the authenticator.
        del settings["JupyterHub"]["load_groups"]
    return with_spawner_backend(settings, site)


def hub_fork_servers(site: Site) -> ForkServers | None:
    """The local backend's fork servers (``spawner.fork_server``), or None."""
    if site.spawner.backend != "local" or not site.spawner.fork_server:
        return None
    isolation = site.spawner.isolation
    as_root = isolation == "system-users" or (isolation == "auto" and os.geteuid() == 0)
    return ForkServers(
        site.hub.state_dir / "logs",
        SERVER_EXTENSIONS,
        as_root=as_root,
        fork_kernels=site.spawner.fork_kernels,
    )


def with_builder_base_image(site: Site) -> Site:
    """``site`` with ``builder.base_image`` set: the site base image unless the config names one."""
    if site.builder.base_image:
        return site
    builder = site.builder.model_copy(update={"base_image": BaseImageRecipe().image_ref})
    return site.model_copy(update={"builder": builder})


def launchable_environments(site: Site) -> CatalogEnvironments | None:
    """What a user may launch beyond the config's environments: the build catalog's, when
    builds are on. The spawner and the Dask gateway both read it through this."""
    return CatalogEnvironments(site) if site.builder.enabled else None


def apply_settings(config: Any, settings: dict[str, Any]) -> None:
    """Copy ``settings`` onto a traitlets Config object (``c`` in a config file)."""
    for class_name, traits in settings.items():
        for trait, value in traits.items():
            setattr(config[class_name], trait, value)
