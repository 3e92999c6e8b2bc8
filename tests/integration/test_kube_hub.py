"""A real hub with ``spawner.backend: kubernetes``, pointed at the API simulation by KUBECONFIG.

The hub runs KioskKubeSpawner with the site handed over by KioskHub's settings: its spawn
form is KubeSpawner's, listing the profiles the user's groups allow; a refused choice is a 400
with the reason; a spawn creates the home claim and the shared Pod manifest in the configured
namespace. The simulation runs no containers, so the server normally never answers and the hub gives
up after ``http_timeout``; either way the pod is deleted at the end, which the test checks.
"""

from __future__ import annotations

import shutil
import time

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.kube_sim import KubernetesSimulation
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

IMAGE = "quay.io/jupyter/base-notebook:2024-10-07"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def kube_hub(monkeypatch):
    folder = open_folder("kube")
    write_sample_data(folder / "data")
    with KubernetesSimulation() as cluster:
        cluster.add_namespace("lab")
        monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(folder / "kubeconfig")))
        config = write_site_config(
            folder,
            spawner={"backend": "kubernetes", "http_timeout": 5, "start_timeout": 20},
            environments=[
                {"name": "default", "display_name": "Python 3", "default": True},
                {"name": "shared", "kind": "image", "image": IMAGE, "display_name": XSS},
            ],
            profiles=[
                {"name": "small", "cpu": 0.5, "memory": "1Gi", "default": True,
                 "display_name": f"Small {XSS}", "description": XSS},
                {"name": "gpu", "cpu": 4, "memory": "16Gi", "gpu": {"count": 1},
                 "groups": ["physics"]},
            ],
            data_mounts=[{"name": "data", "source": "data", "mount_path": "/data"}],
            pods={"image": IMAGE, "namespace": "lab"},
            groups={"physics": ["ada"]},
        )
        hub = start_hub(config, folder / "hub.log")
        yield hub, cluster
        if hub.process.poll() is None:
            hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_the_hub_spawns_through_kubespawner_into_the_cluster(kube_hub):
    hub, cluster = kube_hub
    bob = UserSession(hub.url, "bob")
    bob.login(SHARED_PASSWORD)
    bob.request_token()

    form = bob.http.get(f"{hub.url}/hub/spawn", timeout=30).text
    assert 'value="small"' in form and "profile-option-small--environment" in form
    assert 'value="gpu"' not in form
    refused = bob.api("/users/bob/server", "POST", json={"profile": "gpu"})
    assert refused.status_code == 400
    assert "only for the groups physics" in refused.json()["message"]

    reply = bob.api("/users/bob/server", "POST", json={"environment": "default",
                                                        "profile": "small"})
    assert reply.status_code in (201, 202), reply.text
    deadline = time.monotonic() + 60
    while (server := bob.api("/users/bob").json()["servers"].get("")) and server["pending"]:
        assert time.monotonic() < deadline, server
        time.sleep(0.5)
    assert server and server["ready"], server
    bob.stop_server()
    while cluster.watch_history("pods", "jupyter-bob")[-1:] != [("DELETED", "Running")]:
        assert time.monotonic() < deadline, cluster.watch_history("pods", "jupyter-bob")
        time.sleep(0.5)

    phases = [phase for _, phase in cluster.watch_history("pods", "jupyter-bob")]
    assert phases[:3] == ["Pending", "Pending", "Running"]
    claim = cluster.objects("persistentvolumeclaims", "lab")["claim-bob"]
    assert claim["status"]["phase"] == "Bound"
    created = [p for m, p, _ in cluster.requests if m == "POST"]
    assert created == ["/api/v1/namespaces/lab/persistentvolumeclaims",
                       "/api/v1/namespaces/lab/pods"]
    reasons = [reason for _, reason, _ in cluster.events_for("jupyter-bob", "lab")]
    assert reasons == ["Scheduled", "Pulling", "Pulled", "Created", "Started", "Killing"]
    assert "jupyter-bob" not in cluster.objects("pods", "lab")
    assert bob.api("/users/bob").json()["servers"] == {}


def test_display_names_are_escaped_in_kubespawners_form(kube_hub):
    """Display names are plain text: a script in one never reaches the form as markup."""
    hub, _ = kube_hub
    bob = UserSession(hub.url, "bob")
    bob.login(SHARED_PASSWORD)

    form = bob.http.get(f"{hub.url}/hub/spawn", timeout=30).text

    assert "<img src=x" not in form
    assert '<option value="shared" >&lt;img src=x onerror=alert(1)&gt;</option>' in form
    assert "<h3>Small &lt;img src=x onerror=alert(1)&gt;</h3>" in form
