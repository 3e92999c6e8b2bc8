"""A real hub with ``spawner.backend: kubernetes``, pointed at the API simulation by KUBECONFIG.

Its kioskhub.yaml is the one the chart gives the hub pod: helm 4 renders the chart with this
lab's values, and the ConfigMap's ``kioskhub.yaml`` is taken as the pod would read it (the
backend, the pods' namespace and image, the profiles and the servers' uid/gid all come from
there). Only what a hub on this machine, outside a pod, cannot use is replaced, each named in
``outside_the_cluster``: its URL and ports, its state folder (the chart's is the hub's claim),
``pods.hub_connect_url`` (the chart's is the hub's Service, a name only cluster DNS resolves)
and the builder's port and registry.

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

Environment images run the same way. The hub's environments service builds a user's
repository (a ``setup.py`` package) with podman on the site base image and pushes it to the
run's loopback registry; the user chooses it in the spawn options, the simulated node pulls
it from that registry by digest, and the kernel imports the repository's own package.
Another user cannot start it. Only the repository's own layers are new: the layers below
them are podman's cache of the other container builds, and the registry already holds them
when a container build test ran first in the session (alone, this test pushes them once).
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
from tests.integration.test_builder_environments import SERVICE, Env, git, start_builder_hub
from tests.integration.test_builder_podman_images import remove_images
from tests.kube_sim import HOST_LOOPBACK, KubernetesSimulation
from tests.support.helm import helm
from tests.support.hub_process import free_port
from tests.support.podman import build_base_image, pods_with_label
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

UNPULLABLE = "localhost/kube-sim-not-here:1"
XSS = "<img src=x onerror=alert(1)>"
START_TIMEOUT = 15


def chart_values(image: str) -> dict:
    """The chart's values for this lab: what a site would give ``helm install``."""
    return {
        "site": {
            "auth": {"shared_password": SHARED_PASSWORD},
            "hub": {"admin_users": ["admin"]},
            "home": {"root": "homes"},
            "spawner": {"http_timeout": 90, "start_timeout": START_TIMEOUT},
            "environments": [
                {"name": "default", "display_name": "Python 3", "default": True},
                {"name": "shared", "kind": "image", "image": UNPULLABLE, "display_name": XSS},
            ],
            "profiles": [
                {"name": "small", "cpu": 0.5, "memory": "1Gi", "default": True,
                 "display_name": f"Small {XSS}", "description": XSS},
                {"name": "gpu", "cpu": 4, "memory": "16Gi", "gpu": {"count": 1},
                 "groups": ["physics"]},
                {"name": "eight-gpus", "display_name": "Eight GPUs", "cpu": 1,
                 "memory": "1Gi", "gpu": {"count": 8}},
            ],
            "data_mounts": [{"name": "data", "source": "data", "mount_path": "/data"}],
            "pods": {"image": image, "uid": 1000, "gid": 100},
            "groups": {"physics": ["ada"]},
            "builder": {"enabled": True, "allow_local_paths": True,
                        "default_builder": "container", "registry_insecure": True,
                        "build_timeout": 900},
        },
    }


def rendered_site_config(folder, values: dict) -> dict:
    """The kioskhub.yaml the hub pod reads: the chart's ConfigMap, rendered by helm 4."""
    values_file = folder / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    config_map = next(
        doc for doc in helm("helm4").template(values_file)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "kh-config"
    )
    return yaml.safe_load(config_map["data"]["kioskhub.yaml"])


def outside_the_cluster(folder, hub_port: int, registry: str) -> dict:
    """What a hub on this machine, not in a pod, needs instead of the rendered values."""
    return {
        "hub": {
            # Free loopback ports: the chart's URL is the Ingress's, its ports the pod's own.
            "url": f"http://127.0.0.1:{free_port()}",
            "internal_ports": {"hub": hub_port, "proxy_api": free_port()},
            # The chart's /srv/kioskhub/state is the hub's claim, mounted only in its pod.
            "state_dir": str(folder / "state"),
        },
        "pods": {
            # The chart's http://kh-hub:8081 is the hub's Service, a name only cluster DNS
            # resolves; the simulation's pods reach this machine's loopback here.
            "hub_connect_url": f"http://{HOST_LOOPBACK}:{hub_port}",
        },
        "builder": {
            # The builder listens on a free port, and pushes to this run's loopback registry.
            "port": free_port(),
            "registry": f"{registry}/kioskhub",
        },
    }


@pytest.fixture(scope="module")
def kube_hub(loopback_registry):
    image = build_base_image().image
    folder = open_folder("kube")
    write_sample_data(folder / "data")
    hub_port = free_port()
    rendered = rendered_site_config(folder, chart_values(image))
    (folder / "rendered-kioskhub.yaml").write_text(yaml.safe_dump(rendered))
    config = {**rendered}
    for section, values in outside_the_cluster(folder, hub_port, loopback_registry.host).items():
        config[section] = {**rendered.get(section, {}), **values}
    (folder / "kioskhub.yaml").write_text(yaml.safe_dump(config))
    with pytest.MonkeyPatch.context() as monkeypatch, KubernetesSimulation(
        insecure_registries=[loopback_registry.host]
    ) as cluster:
        cluster.add_namespace(rendered["pods"]["namespace"])
        # The hub's ServiceAccount in a cluster; the simulation's API here.
        monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(folder / "kubeconfig")))
        hub = start_builder_hub(folder / "kioskhub.yaml", folder / "hub.log")
        yield hub, cluster, folder
        if hub.process.poll() is None:
            hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def rendered_pods(folder) -> dict:
    return yaml.safe_load((folder / "rendered-kioskhub.yaml").read_text())["pods"]


def test_the_hub_runs_on_the_config_the_chart_rendered(kube_hub):
    """Only what a hub outside the cluster must change differs from the chart's config."""
    hub, cluster, folder = kube_hub
    rendered = yaml.safe_load((folder / "rendered-kioskhub.yaml").read_text())
    running = yaml.safe_load(hub.config.read_text())
    overridden = outside_the_cluster(folder, 0, "registry").items()
    assert {(section, key) for section, keys in overridden for key in keys} == {
        ("hub", "url"), ("hub", "internal_ports"), ("hub", "state_dir"),
        ("pods", "hub_connect_url"), ("builder", "port"), ("builder", "registry")}
    for section, keys in overridden:
        assert {k: v for k, v in running[section].items() if k not in keys} == {
            k: v for k, v in rendered[section].items() if k not in keys}
    assert {k: v for k, v in running.items() if k not in dict(overridden)} == {
        k: v for k, v in rendered.items() if k not in dict(overridden)}
    # What the chart decides, not the values: the backend and the release's namespace.
    assert rendered["spawner"]["backend"] == "kubernetes"
    assert rendered["pods"]["namespace"] == "lab"
    assert rendered["pods"]["hub_connect_url"] == "http://kh-hub:8081"
    assert rendered["hub"]["state_dir"] == "/srv/kioskhub/state"
    assert [p["name"] for p in rendered["profiles"]] == ["small", "gpu", "eight-gpus"]
    assert (rendered["pods"]["uid"], rendered["pods"]["gid"]) == (1000, 100)


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

    spawned(bob, hub, {"environment": "default", "profile": "small"})
    # The spawn page shows these events while a start outlasts JupyterHub's slow-spawn wait.
    started = [m for _, r, m in cluster.events_for("jupyter-bob", "lab") if r == "Started"]
    assert started == ["Started container notebook"], started
    pod = cluster.objects("pods", "lab")["jupyter-bob"]
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIP"].startswith("127.244.0.")
    assert podman_pods(cluster) == [f"ksim-{cluster.cluster_id}-lab-jupyter-bob"]
    chart = rendered_pods(folder)  # the pod is run as the chart's rendered config says
    security = {**pod["spec"]["securityContext"], **pod["spec"]["containers"][0]["securityContext"]}
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (
        chart["uid"], chart["gid"], chart["gid"])
    assert security["runAsNonRoot"] and security["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["containers"][0]["image"] == chart["image"]

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


OPTICS_SETUP = """from setuptools import setup
setup(name="optics-kit", version="0.1", packages=["optics_kit"])
"""
OPTICS_PACKAGE = '''def focal_length(radius_mm):
    """What the kernel prints: a mirror's focal length."""
    return f"optics_kit: f = {radius_mm / 2:.1f} mm"
'''


def optics_repository(folder) -> str:
    """A repository in the shape Binder users write: a ``setup.py`` package, nothing else."""
    repo = folder / "optics"
    (repo / "optics_kit").mkdir(parents=True)
    (repo / "setup.py").write_text(OPTICS_SETUP)
    (repo / "optics_kit" / "__init__.py").write_text(OPTICS_PACKAGE)
    git(repo, "init", "--quiet")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "Optics")
    return str(repo)


def test_an_environment_image_built_by_the_service_runs_in_a_pod(kube_hub, loopback_registry):
    hub, cluster, folder = kube_hub
    erin = Env(hub.url, "erin")
    assert erin.base.startswith(hub.url + SERVICE)

    registered = erin.call("POST", "/environments",
                           json={"name": "optics", "repository": optics_repository(folder)})
    assert registered.status_code == 201, registered.text
    environment_id = registered.json()["id"]
    built = erin.follow(environment_id, timeout=900)
    assert built[-1]["status"] == "ready", built[-5:]
    image = erin.call("GET", f"/environments/{environment_id}").json()["artifact"]["image_ref"]
    assert image.startswith(f"{loopback_registry.host}/kioskhub/erin-optics@sha256:"), image

    form = erin.user.http.get(f"{hub.url}/hub/spawn", timeout=30).text
    assert '<option value="erin.optics" >optics (erin)</option>' in form, form
    # A cluster's node is not the machine that built the image; here both use one podman
    # storage, so the built image leaves it (its layers shared with the base image stay)
    # and the node pulls it from the registry.
    remove_images("localhost/kioskhub-env/erin-optics")
    spawned(erin.user, hub, {"environment": "erin.optics", "profile": "small"})
    pod = cluster.objects("pods", "lab")["jupyter-erin"]
    pulls = [(reason, message) for _, reason, message in cluster.events_for("jupyter-erin", "lab")
             if reason in ("Pulling", "Pulled")]
    assert pulls[0] == ("Pulling", f'Pulling image "{image}"'), pulls  # from the registry
    assert pulls[1][1].startswith(f'Successfully pulled image "{image}" in '), pulls
    assert pod["spec"]["containers"][0]["image"] == image
    assert pod["metadata"]["labels"]["kioskhub/environment"] == "erin.optics"

    reply = erin.user.execute(
        "import os, optics_kit\n"
        "print(os.environ['KIOSKHUB_ENVIRONMENT'], os.getuid())\n"
        "print(optics_kit.focal_length(300))\n"
        "print(optics_kit.__file__.startswith('/opt/kioskhub/'))",
        timeout=90,
    )
    assert reply["error"] is None, reply
    assert reply["stdout"].splitlines() == ["erin.optics 1000", "optics_kit: f = 150.0 mm",
                                            "True"]
    erin.user.stop_server()
    wait_until_deleted(cluster, "jupyter-erin")

    frank = signed_in(hub, "frank")
    refused = frank.api("/users/frank/server", "POST", json={"environment": "erin.optics"})
    assert refused.status_code == 400, refused.text
    assert "Unknown environment 'erin.optics'" in refused.json()["message"]
    assert "jupyter-frank" not in cluster.objects("pods", "lab")
