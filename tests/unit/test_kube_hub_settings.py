"""The hub's settings in a cluster: the proxy, the hub's services and the Dask gateway where
the chart's Services and pods are."""

from __future__ import annotations

from kioskhub.hub.dask_gateway import gateway_hub_settings
from kioskhub.hub.gallery.hub_service import gallery_hub_settings
from kioskhub.hub.kube_hub_settings import ClusterAddresses, cluster_hub_settings
from kioskhub.hub.schema.site import Site

ADDRESSES = ClusterAddresses(
    hub_host="kh-hub",
    pod_ip="10.42.0.7",
    proxy_api_url="http://kh-proxy-api:8001",
    proxy_url="http://kh-proxy-public",
    gateway_url="http://kh-dask-traefik",
    gateway_token="gateway-secret",
)


def site(**sections) -> Site:
    return Site.model_validate({"hub": {"url": "https://hub.example.org"}, **sections})


def test_the_hub_listens_for_the_cluster_and_leaves_the_proxy_to_its_deployment():
    external = {"name": "elsewhere", "url": "http://127.0.0.1:9999"}  # not started by the hub
    settings = cluster_hub_settings(site(), [external], ADDRESSES)
    assert settings["JupyterHub"] == {
        "hub_ip": "0.0.0.0",
        "hub_connect_ip": "kh-hub",
        "services": [external],
    }
    assert settings["ConfigurableHTTPProxy"] == {
        "should_start": False,
        "api_url": "http://kh-proxy-api:8001",
    }
    assert "KioskKubeSpawner" not in settings


def test_hub_managed_services_listen_where_the_proxy_reaches_them():
    gallery_site = site(gallery={"enabled": True})
    services = gallery_hub_settings(gallery_site, python="python")["JupyterHub"]["services"]
    settings = cluster_hub_settings(gallery_site, services, ADDRESSES)
    (gallery,) = settings["JupyterHub"]["services"]
    assert gallery["url"] == f"http://10.42.0.7:{gallery_site.gallery.port}"
    assert gallery["command"] == services[0]["command"]
    assert settings["KioskKubeSpawner"]["environment"] == {
        "KIOSKHUB_GALLERY_URL": "http://kh-proxy-public/services/gallery/"
    }


def test_the_gateway_service_is_its_traefik_and_servers_keep_their_own_profile():
    dask_site = site(dask={"enabled": True})
    services = gateway_hub_settings(dask_site, python="python")["JupyterHub"]["services"]
    settings = cluster_hub_settings(dask_site, services, ADDRESSES)
    (gateway,) = settings["JupyterHub"]["services"]
    assert "command" not in gateway and "cwd" not in gateway
    assert gateway["url"] == "http://kh-dask-traefik"
    assert gateway["api_token"] == "gateway-secret"
    assert gateway["oauth_client_id"] == "service-dask-gateway"
    assert settings["KioskKubeSpawner"]["environment"] == {
        "DASK_GATEWAY__ADDRESS": "http://kh-dask-traefik/services/dask-gateway",
        "DASK_GATEWAY__PUBLIC_ADDRESS": "https://hub.example.org/services/dask-gateway",
        "DASK_GATEWAY__PROXY_ADDRESS": "gateway://kh-dask-traefik:80",
    }
