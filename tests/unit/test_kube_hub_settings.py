"""The hub's settings in a cluster: the proxy and the Dask gateway at their Services."""

from __future__ import annotations

from kioskhub.hub.dask_gateway import gateway_hub_settings
from kioskhub.hub.kube_hub_settings import ClusterAddresses, cluster_hub_settings
from kioskhub.hub.schema.site import Site

ADDRESSES = ClusterAddresses(
    hub_host="kh-hub",
    proxy_api_url="http://kh-proxy-api:8001",
    gateway_url="http://kh-dask-traefik",
    gateway_token="gateway-secret",
)


def site(**sections) -> Site:
    return Site.model_validate({"hub": {"url": "https://hub.example.org"}, **sections})


def test_the_hub_listens_for_the_cluster_and_leaves_the_proxy_to_its_deployment():
    settings = cluster_hub_settings(site(), [{"name": "gallery", "url": "http://x"}], ADDRESSES)
    assert settings["JupyterHub"] == {
        "hub_ip": "0.0.0.0",
        "hub_connect_ip": "kh-hub",
        "services": [{"name": "gallery", "url": "http://x"}],
    }
    assert settings["ConfigurableHTTPProxy"] == {
        "should_start": False,
        "api_url": "http://kh-proxy-api:8001",
    }
    assert "KioskKubeSpawner" not in settings


def test_the_gateway_service_is_the_gateways_deployment_not_a_process():
    dask_site = site(dask={"enabled": True})
    services = gateway_hub_settings(dask_site, python="python")["JupyterHub"]["services"]
    settings = cluster_hub_settings(dask_site, services, ADDRESSES)
    (gateway,) = settings["JupyterHub"]["services"]
    assert "command" not in gateway and "cwd" not in gateway
    assert gateway["url"] == "http://kh-dask-traefik"
    assert gateway["api_token"] == "gateway-secret"
    assert gateway["oauth_client_id"] == "service-dask-gateway"
    env = settings["KioskKubeSpawner"]["environment"]
    assert env["DASK_GATEWAY__ADDRESS"] == "http://kh-dask-traefik/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://kh-dask-traefik:80"
    assert env["DASK_GATEWAY__PUBLIC_ADDRESS"] == "https://hub.example.org/services/dask-gateway"
