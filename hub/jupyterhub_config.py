"""The JupyterHub config file that ``kioskhub up`` hands to JupyterHub.

It reads the site config named by ``KIOSKHUB_CONFIG`` and applies the settings
derived from it; every choice lives in ``jupyterhub_settings``.
"""

import os
import sys
from pathlib import Path

from kioskhub.hub.auth_settings import provider_endpoints
from kioskhub.hub.dask_gateway import write_gateway_config
from kioskhub.hub.jupyterhub_settings import apply_settings, find_proxy_command, jupyterhub_settings
from kioskhub.hub.oidc_discovery import DiscoveryError
from kioskhub.hub.schema.config_file import ConfigError, load_site
from kioskhub.hub.state_dir import prepare_state_dir
from kioskhub.spawner.fork_choice import prewarm_prefixes

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

site_file = Path(os.environ.get("KIOSKHUB_CONFIG", "kioskhub.yaml")).resolve()
try:
    site = load_site(site_file)
    oidc_endpoints = provider_endpoints(site, os.environ)
except (ConfigError, DiscoveryError) as error:
    print(f"kioskhub: {error}", file=sys.stderr)
    sys.exit(2)

settings = jupyterhub_settings(
    site,
    prepare_state_dir(site),
    find_proxy_command() or "configurable-http-proxy",
    oidc_endpoints,
)
apply_settings(c, settings)
fork_servers = settings.get("KioskSpawner", {}).get("fork_servers")
if fork_servers is not None and site.spawner.fork_server_prewarm:
    # JupyterHub loads this file in its running event loop; the parents start beside it.
    fork_servers.in_background(fork_servers.prewarm(prewarm_prefixes(site, Path(sys.prefix))))
write_gateway_config(site, site_file=site_file)
