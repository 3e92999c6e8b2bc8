"""The chart's Dask Gateway speaks dask-gateway-server's own configuration: every trait the
rendered gateway config and controller command set exists on the class that reads it."""

from __future__ import annotations

import importlib

import pytest
from traitlets.config import PyFileConfigLoader

from tests.support.helm import EVERYTHING_ON, helm

CLASSES = {
    "DaskGateway": "dask_gateway_server.app.DaskGateway",
    "KubeBackend": "dask_gateway_server.backends.kubernetes.backend.KubeBackend",
    "KubeClusterConfig": "dask_gateway_server.backends.kubernetes.backend.KubeClusterConfig",
    "KubeController": "dask_gateway_server.backends.kubernetes.controller.KubeController",
    "JupyterHubAuthenticator": "dask_gateway_server.auth.JupyterHubAuthenticator",
    "KioskHubAuthenticator": "kioskhub.hub.dask_gateway_backend.KioskHubAuthenticator",
}


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return helm("helm4").template(EVERYTHING_ON)


def trait_names(name: str) -> set[str]:
    module, _, attribute = CLASSES[name].rpartition(".")
    return set(getattr(importlib.import_module(module), attribute).class_trait_names())


def container(rendered: list[dict], name: str) -> dict:
    deployment = next(
        d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    )
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_gateway_config_sets_only_traits_that_exist(rendered, tmp_path, monkeypatch):
    config_map = next(d for d in rendered if d["kind"] == "ConfigMap")["data"]
    (tmp_path / "kioskhub.yaml").write_text(config_map["kioskhub.yaml"])
    (tmp_path / "data" / "beams").mkdir(parents=True)
    (tmp_path / "dask_gateway_config.py").write_text(config_map["dask_gateway_config.py"])
    env = {e["name"]: e.get("value", "") for e in container(rendered, "kh-dask-gateway")["env"]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KIOSKHUB_CONFIG", str(tmp_path / "kioskhub.yaml"))

    loader = PyFileConfigLoader("dask_gateway_config.py", path=str(tmp_path))
    config = loader.load_config()

    assert config.DaskGateway.backend_class.endswith("kubernetes.KubeBackend")
    assert config.KubeBackend.gateway_instance == "kh-dask-gateway"
    assert config.KubeClusterConfig.image == "registry.example.org/kioskhub/lab:2026.11"
    assert config.KubeBackend.cluster_options is not None  # KioskHub's options per profile
    for section, traits in config.items():
        assert set(traits) <= trait_names(section), f"{section}: {set(traits)}"


def test_the_controller_config_sets_only_traits_that_exist(rendered, tmp_path, monkeypatch):
    controller = container(rendered, "kh-dask-controller")
    assert controller["command"] == [
        "dask-gateway-server",
        "kube-controller",
        "--config",
        "/etc/dask-gateway/dask_controller_config.py",
    ]
    config_map = next(d for d in rendered if d["kind"] == "ConfigMap")["data"]
    (tmp_path / "controller.py").write_text(config_map["dask_controller_config.py"])
    for variable in controller["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])

    config = PyFileConfigLoader("controller.py", path=str(tmp_path)).load_config()

    assert set(config) == {"KubeController"}
    settings = config.KubeController
    assert set(settings) <= trait_names("KubeController")
    assert settings.gateway_instance == "kh-dask-gateway"
    assert settings.api_url == "http://kh-dask-gateway.lab:8000/api"
    assert settings.proxy_prefix == "/services/dask-gateway"
    # Dashboards lose the hub's prefix on the way to their scheduler, through the chart's
    # own Middleware.
    middleware = next(d for d in rendered if d["kind"] == "Middleware")
    assert settings.proxy_web_middlewares == [
        {"name": middleware["metadata"]["name"], "namespace": "lab"}
    ]
    assert middleware["spec"] == {"stripPrefix": {"prefixes": ["/services/dask-gateway"]}}
