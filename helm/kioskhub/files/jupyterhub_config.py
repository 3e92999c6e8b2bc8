"""The hub's JupyterHub config in the cluster: KioskHub's own, then the cluster's addresses.

KIOSKHUB_CONFIG names the rendered kioskhub.yaml; the addresses come from the chart's
environment variables (kioskhub.hub.kube_hub_settings says what changes and why).
"""

import os
from pathlib import Path

import kioskhub.hub
from kioskhub.hub.jupyterhub_settings import apply_settings
from kioskhub.hub.kube_hub_settings import ClusterAddresses, cluster_hub_settings
from kioskhub.hub.schema.config_file import load_site

load_subconfig(str(Path(kioskhub.hub.__file__).parent / "jupyterhub_config.py"))  # noqa: F821

apply_settings(
    c,  # noqa: F821
    cluster_hub_settings(
        load_site(os.environ["KIOSKHUB_CONFIG"]),
        list(c.JupyterHub.services),  # noqa: F821
        ClusterAddresses(
            hub_host=os.environ["KIOSKHUB_HUB_HOST"],
            pod_ip=os.environ["KIOSKHUB_POD_IP"],
            proxy_api_url=os.environ["KIOSKHUB_PROXY_API_URL"],
            proxy_url=os.environ["KIOSKHUB_PROXY_URL"],
            gateway_url=os.environ.get("KIOSKHUB_GATEWAY_URL", ""),
            gateway_token=os.environ.get("KIOSKHUB_GATEWAY_TOKEN", ""),
        ),
    ),
)
