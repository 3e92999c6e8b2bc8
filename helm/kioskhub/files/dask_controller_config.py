"""dask-gateway's controller: DaskCluster resources → scheduler and worker pods, their
Secrets and Services, and Traefik routes below the hub's /services/dask-gateway/."""

import os

c = get_config()  # noqa: F821
c.KubeController.gateway_instance = os.environ["GATEWAY_INSTANCE"]
c.KubeController.api_url = os.environ["GATEWAY_API_URL"]
c.KubeController.proxy_prefix = os.environ["GATEWAY_PREFIX"]
c.KubeController.proxy_web_entrypoint = "web"
c.KubeController.proxy_tcp_entrypoint = "web"
c.KubeController.proxy_web_middlewares = [
    {"name": os.environ["GATEWAY_STRIP_MIDDLEWARE"], "namespace": os.environ["NAMESPACE"]}
]
