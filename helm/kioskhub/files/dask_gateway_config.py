"""dask-gateway-server on Kubernetes: the upstream KubeBackend starts the clusters as
DaskCluster resources (the controller makes their pods); KioskHub's options per resource
profile and its group gate come from the same site config as the hub's
(kioskhub.hub.dask_gateway_kube)."""

import os

from kioskhub.hub.dask_gateway_kube import kube_extra_config
from kioskhub.hub.schema.config_file import load_site

c = get_config()  # noqa: F821
c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
c.DaskGateway.address = ":8000"
c.KubeBackend.api_url = os.environ["GATEWAY_API_URL"]
c.KubeBackend.gateway_instance = os.environ["GATEWAY_INSTANCE"]
c.KubeClusterConfig.image = os.environ["CLUSTER_IMAGE"]
c.JupyterHubAuthenticator.jupyterhub_api_url = os.environ["JUPYTERHUB_API_URL"]
exec(kube_extra_config(load_site(os.environ["KIOSKHUB_CONFIG"])))  # noqa: S102
