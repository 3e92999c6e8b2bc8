"""KioskHub's own image (helm/Containerfile), built with podman on the site base image, and
the chart's hub and proxy run from it as the chart renders them.

The image is built once per run; podman's layer cache keeps the dependencies' layer, so a
rebuild after a source change only copies and installs KioskHub itself. The hub and the
proxy run as the rendered Deployments say (command, environment, account, read-only root),
in one podman pod whose host names stand for the chart's Services.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import requests

from kioskhub.spawner.pod_image_build import host_package_access
from kioskhub.spawner.podman_cli import podman_command, podman_env
from tests.support.helm import helm
from tests.support.hub_process import free_port
from tests.support.podman import build_base_image, podman
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HUB_IMAGE = "localhost/kioskhub-hub:test"
_built: str | None = None


def build_hub_image() -> str:
    """``podman build -f helm/Containerfile`` on the base image, once per run."""
    global _built
    if _built is None:
        volumes, build_args = host_package_access()
        result = subprocess.run(
            podman_command(
                "build",
                "--network",
                "host",
                *volumes,
                *build_args,
                "--build-arg",
                f"BASE_IMAGE={build_base_image().image}",
                "-t",
                HUB_IMAGE,
                "-f",
                str(REPO / "helm" / "Containerfile"),
                str(REPO),
            ),
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            pytest.fail(
                f"building helm/Containerfile failed:\n{result.stdout[-4000:]}"
                f"\n{result.stderr[-4000:]}"
            )
        _built = HUB_IMAGE
    return _built


def test_the_hub_image_holds_every_component_and_runs_unprivileged():
    image = build_hub_image()
    result = podman(
        "run",
        "--rm",
        "--read-only",
        image,
        "sh",
        "-c",
        "id -u; configurable-http-proxy --version; command -v dask-gateway-server; "
        "python -c 'import kioskhub.hub.kube_hub_settings, kubespawner, jupyterhub; "
        "print(jupyterhub.__version__)'",
    )
    uid, proxy_version, gateway, hub_version = result.stdout.split()
    assert uid == "1000"
    assert proxy_version.startswith("4.")
    assert gateway == "/opt/kioskhub/bin/dask-gateway-server"
    assert hub_version == version("jupyterhub")  # the base image pins the hub's own


def test_the_charts_hub_proxy_and_gallery_serve_a_signed_in_user(tmp_path):
    image = build_hub_image()
    port = free_port()
    docs = helm("helm4").template_with(
        "--set", f"site.hub.url=http://127.0.0.1:{port}", "--set", "site.gallery.enabled=true"
    )
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    (tmp_path / "kioskhub.yaml").write_text(config["kioskhub.yaml"])
    (tmp_path / "jupyterhub_config.py").write_text(config["jupyterhub_config.py"])
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["chown", "1000:100", str(state)], check=True)
    token = secrets.token_hex(16)
    pod = f"kh-helm-test-{secrets.token_hex(4)}"
    podman(
        "pod",
        "create",
        "--name",
        pod,
        "--label",
        "kioskhub.test=helm",
        "--publish",
        f"127.0.0.1:{port}:8000",
        "--add-host",
        "kh-hub:127.0.0.1",
        "--add-host",
        "kh-proxy-api:127.0.0.1",
    )
    try:
        pod_ip = ""
        for name, mounts in (
            ("kh-proxy", []),
            (
                "kh-hub",
                [
                    f"{state}:/srv/kioskhub/state",
                    f"{tmp_path / 'kioskhub.yaml'}:/srv/kioskhub/kioskhub.yaml:ro",
                    f"{tmp_path / 'jupyterhub_config.py'}:/etc/kioskhub/jupyterhub_config.py:ro",
                ],
            ),
        ):
            podman(
                "run",
                "--detach",
                "--pod",
                pod,
                "--name",
                f"{pod}-{name}",
                *_as_rendered(deployments[name], token, pod_ip),
                *sum((["-v", m] for m in mounts), []),
                image,
                *deployments[name]["spec"]["template"]["spec"]["containers"][0]["command"],
            )
            # The pod's own address, which the hub's services listen on for the proxy.
            pod_ip = (
                pod_ip
                or podman(
                    "inspect", f"{pod}-{name}", "--format", "{{.NetworkSettings.IPAddress}}"
                ).stdout.strip()
            )
        hub_url = f"http://127.0.0.1:{port}"
        page = _wait_for(f"{hub_url}/hub/login", pod)
        assert "Sign in" in page.text
        assert requests.get(f"{hub_url}/hub/api", timeout=5).json()["version"]
        # The hub kept its generated password on its claim, and signs a user in with it.
        password = json.loads((state / "secrets.json").read_text())["user_password"]
        ada = UserSession(hub_url, "ada")
        assert ada.login("not-the-password").status_code == 403
        ada.login(password)
        who = ada.http.get(f"{hub_url}/hub/api/user", timeout=30)
        assert who.status_code == 200 and who.json()["name"] == "ada", _logs(pod)
        # The gallery, a hub-managed service, answers through the proxy at the pod's address
        # and sends ada to the hub's OAuth. Going further (and starting servers) needs the
        # cluster's API, which helm/kioskhub/ci/e2e-real-cluster.sh gives the hub.
        deadline = time.monotonic() + 60
        while True:  # the hub routes the service once it answers
            gallery = ada.http.get(
                f"{hub_url}/services/gallery/", timeout=30, allow_redirects=False
            )
            location = gallery.headers.get("Location", "")
            if "/hub/services/" not in location or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert gallery.status_code == 302, _logs(pod)
        assert "/hub/api/oauth2/authorize?" in location, _logs(pod)
        assert "client_id=service-gallery" in gallery.headers["Location"]
    finally:
        podman("pod", "rm", "--force", "--time", "0", pod, check=False)


def _as_rendered(deployment: dict, proxy_token: str, pod_ip: str) -> list[str]:
    """podman options for the container as the Deployment runs it."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    options = [
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    for variable in container.get("env", []):
        value = variable.get("value")
        source = variable.get("valueFrom", {})
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "status.podIP" and pod_ip
            value = pod_ip
        elif source:
            assert source["secretKeyRef"]["key"] == "proxy-token"
            value = proxy_token
        options += ["--env", f"{variable['name']}={value}"]
    if "workingDir" in container:
        options += ["--workdir", container["workingDir"]]
    return options


def _wait_for(url: str, pod: str) -> requests.Response:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == 200:
                return response
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail(f"{url} did not answer 200 within 120 s; {_logs(pod)}")


def _logs(pod: str) -> str:
    return "\n".join(
        f"{name} log:\n" + podman("logs", f"{pod}-{name}", check=False).stderr[-3000:]
        for name in ("kh-proxy", "kh-hub")
    )
