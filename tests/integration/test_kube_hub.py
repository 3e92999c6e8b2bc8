"""A real hub with ``spawner.backend: kubernetes``, pointed at the API simulation by KUBECONFIG.

The hub runs KioskKubeSpawner with the site handed over by KioskHub's settings: its spawn
form is KubeSpawner's, listing the profiles the user's groups allow; a refused choice is a 400
with the reason; a spawn creates the home claim and the shared Pod manifest in the configured
namespace. The simulation's kubelet runs the pod with podman (the site base image), so the
user gets a real JupyterLab behind the hub's proxy, whose kernel executes code with the data
mount read-only and the home claim mounted; the home outlives the pod, and stopping the server
deletes the pod. Pods reach the hub's API at ``pods.hub_connect_url``: this machine's
loopback as the simulation's pods see it.

A start that cannot succeed ends with a message on the user's spawn page that says why: an
image the cluster cannot pull, and a profile that no node can take.
"""

from __future__ import annotations

import html
import re
import shutil
import time

import pytest
import yaml

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.kube_sim import HOST_LOOPBACK, KubernetesSimulation
from tests.support.hub_process import free_port, start_hub, write_site_config
from tests.support.podman import build_base_image, pods_with_label
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

UNPULLABLE = "localhost/kube-sim-not-here:1"
XSS = "<img src=x onerror=alert(1)>"
START_TIMEOUT = 15


@pytest.fixture(scope="module")
def kube_hub():
    image = build_base_image().image
    folder = open_folder("kube")
    write_sample_data(folder / "data")
    hub_port = free_port()
    with pytest.MonkeyPatch.context() as monkeypatch, KubernetesSimulation() as cluster:
        cluster.add_namespace("lab")
        monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(folder / "kubeconfig")))
        config = write_site_config(
            folder,
            hub={"internal_ports": {"hub": hub_port, "proxy_api": free_port()}},
            spawner={"backend": "kubernetes", "http_timeout": 90,
                     "start_timeout": START_TIMEOUT},
            environments=[
                {"name": "default", "display_name": "Python 3", "default": True},
                {"name": "shared", "kind": "image", "image": UNPULLABLE, "display_name": XSS},
            ],
            profiles=[
                {"name": "small", "cpu": 0.5, "memory": "1Gi", "default": True,
                 "display_name": f"Small {XSS}", "description": XSS},
                {"name": "gpu", "cpu": 4, "memory": "16Gi", "gpu": {"count": 1},
                 "groups": ["physics"]},
                {"name": "eight-gpus", "display_name": "Eight GPUs", "cpu": 1, "memory": "1Gi",
                 "gpu": {"count": 8}},
            ],
            data_mounts=[{"name": "data", "source": "data", "mount_path": "/data"}],
            pods={"image": image, "namespace": "lab",
                  "hub_connect_url": f"http://{HOST_LOOPBACK}:{hub_port}"},
            groups={"physics": ["ada"]},
        )
        hub = start_hub(config, folder / "hub.log")
        yield hub, cluster, folder
        if hub.process.poll() is None:
            hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def signed_in(hub, name: str) -> UserSession:
    user = UserSession(hub.url, name)
    user.login(SHARED_PASSWORD)
    user.request_token()
    return user


def spawned(user: UserSession, hub, options: dict) -> list[dict]:
    events = user.spawn(options, timeout=150)
    assert events[-1].get("ready"), (events, hub.log_text()[-4000:])
    return events


def podman_pods(cluster) -> list[str]:
    return [p["Name"] for p in pods_with_label(f"kube-sim/cluster={cluster.cluster_id}")]


def wait_until_deleted(cluster, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while cluster.watch_history("pods", name)[-1][0] != "DELETED":
        assert time.monotonic() < deadline, cluster.watch_history("pods", name)
        time.sleep(0.5)


PROBE = """
import os
print(os.getuid(), os.environ["JUPYTERHUB_API_URL"])
print(open('/data/beamline-sample.csv').readline().strip())
try:
    open('/data/mine.txt', 'w')
except OSError as error:
    print('refused', error.strerror)
open(os.path.expanduser('~/notes.txt'), 'w').write('kept in the home claim')
print(6 * 7)
"""


def test_a_user_gets_jupyterlab_in_a_pod_whose_home_outlives_it(kube_hub):
    hub, cluster, folder = kube_hub
    bob = signed_in(hub, "bob")

    form = bob.http.get(f"{hub.url}/hub/spawn", timeout=30).text
    assert 'value="small"' in form and "profile-option-small--environment" in form
    assert 'value="gpu"' not in form
    refused = bob.api("/users/bob/server", "POST", json={"profile": "gpu"})
    assert refused.status_code == 400
    assert "only for the groups physics" in refused.json()["message"]

    progress = [e["message"] for e in spawned(bob, hub, {"environment": "default",
                                                          "profile": "small"})]
    assert any("Started container notebook" in m for m in progress), progress
    pod = cluster.objects("pods", "lab")["jupyter-bob"]
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIP"].startswith("127.244.0.")
    assert podman_pods(cluster) == [f"ksim-{cluster.cluster_id}-lab-jupyter-bob"]

    reply = bob.execute(PROBE, timeout=90)  # through the hub's proxy, to the pod's kernel
    assert reply["error"] is None, reply
    assert reply["stdout"].splitlines() == [
        f"1000 http://{HOST_LOOPBACK}:{hub_port(hub)}/hub/api",
        "time_s,intensity,temperature_k",
        "refused Read-only file system",
        "42",
    ]
    assert not (folder / "data" / "mine.txt").exists()

    bob.stop_server()
    wait_until_deleted(cluster, "jupyter-bob")
    assert "jupyter-bob" not in cluster.objects("pods", "lab")
    assert podman_pods(cluster) == []

    spawned(bob, hub, {"environment": "default", "profile": "small"})
    again = bob.execute("print(open('/home/jovyan/notes.txt').read())", timeout=90)
    assert again["stdout"].strip() == "kept in the home claim", again
    bob.stop_server()
    wait_until_deleted(cluster, "jupyter-bob")

    created = [p for m, p, _ in cluster.requests if m == "POST"]
    assert created == ["/api/v1/namespaces/lab/persistentvolumeclaims",
                       "/api/v1/namespaces/lab/pods", "/api/v1/namespaces/lab/pods"]
    claim = cluster.objects("persistentvolumeclaims", "lab")["claim-bob"]
    assert claim["status"]["phase"] == "Bound"
    reasons = [reason for _, reason, _ in cluster.events_for("jupyter-bob", "lab")]
    assert [r for r in reasons if r != "FailedScheduling"] == [
        "Scheduled", "Pulled", "Created", "Started", "Killing"
    ] * 2
    assert bob.api("/users/bob").json()["servers"] == {}


def hub_port(hub) -> int:
    return yaml.safe_load(hub.config.read_text())["hub"]["internal_ports"]["hub"]


def spawn_page_text(user: UserSession, hub) -> str:
    """The text a user reads on their spawn-pending page (markup removed)."""
    page = user.http.get(f"{hub.url}/hub/spawn-pending/{user.username}", timeout=30).text
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def failed_spawn(user: UserSession, hub, options: dict) -> tuple[str, str]:
    """(the message the start failed with, the spawn page's text afterwards).

    A start that fails within the hub's ``slow_spawn_timeout`` answers the request itself;
    a slower one fails in the progress that the spawn page follows.
    """
    reply = user.api(f"/users/{user.username}/server", "POST", json=options)
    if reply.status_code in (201, 202):
        events = user.wait_ready(timeout=120)
        assert events[-1].get("failed"), events
        assert events[-1]["message"].startswith("Spawn failed: "), events
        message = events[-1]["message"].removeprefix("Spawn failed: ")
    else:
        assert reply.status_code == 500, reply.text
        message = reply.json()["message"]
    return message, spawn_page_text(user, hub)


def test_an_image_the_cluster_cannot_pull_is_explained_on_the_spawn_page(kube_hub):
    hub, cluster, _ = kube_hub
    carol = signed_in(hub, "carol")

    began = time.monotonic()
    message, page = failed_spawn(carol, hub, {"environment": "shared", "profile": "small"})

    explanation = re.compile(
        f"Your server could not start: the cluster cannot pull the image {UNPULLABLE} "
        f"\\((ErrImagePull|ImagePullBackOff): initializing source docker://{UNPULLABLE}: "
        "pinging container registry localhost: .*connection refused\\)\\. Choose another "
        "environment, or ask the site's admins to check that this image exists and that the "
        "cluster's nodes may pull it\\."
    )
    assert explanation.fullmatch(message), message
    assert "Spawn failed" in page and explanation.search(page), page
    assert time.monotonic() - began < START_TIMEOUT
    wait_until_deleted(cluster, "jupyter-carol")


def test_a_profile_no_node_can_take_is_explained_on_the_spawn_page(kube_hub):
    hub, cluster, _ = kube_hub
    dan = signed_in(hub, "dan")

    message, page = failed_spawn(dan, hub, {"profile": "eight-gpus"})

    explanation = (
        "Your server could not start: no node of the cluster can run the profile Eight GPUs "
        "now (0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) had "
        "untolerated taint {nvidia.com/gpu: present}.). Choose a smaller profile, or try again "
        "later; the site's admins can tell whether nodes for this profile exist."
    )
    assert message == explanation
    assert "Spawn failed" in page and explanation in page, page
    wait_until_deleted(cluster, "jupyter-dan")
    assert ("MODIFIED", "Running") not in cluster.watch_history("pods", "jupyter-dan")


def test_display_names_are_escaped_in_kubespawners_form(kube_hub):
    """Display names are plain text: a script in one never reaches the form as markup."""
    hub, _, _ = kube_hub
    bob = UserSession(hub.url, "bob")
    bob.login(SHARED_PASSWORD)

    form = bob.http.get(f"{hub.url}/hub/spawn", timeout=30).text

    assert "<img src=x" not in form
    assert '<option value="shared" >&lt;img src=x onerror=alert(1)&gt;</option>' in form
    assert "<h3>Small &lt;img src=x onerror=alert(1)&gt;</h3>" in form
