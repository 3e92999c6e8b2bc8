"""KioskKubeSpawner's start/poll/stop against the Kubernetes API simulation.

KubeSpawner runs unchanged: it creates the home claim and the pod through kubernetes_asyncio,
follows them with its watch-based reflectors, reports progress from events, polls the pod's
phase and deletes it on stop. The simulation's kubelet runs each pod with podman (the site
base image), so the phases, addresses and exit codes are a real container's. The tests check
what reached the API (the shared Pod manifest), the phases and events the cluster went
through, KioskHub's choices (profiles generated from the site config, gated by groups), and
the messages a start that cannot succeed ends with (an image that cannot be pulled, a pod
no node can take). Most pods run a stand-in for the server (``IDLE``): these tests are about
the pod's life, and ``test_kube_hub`` runs JupyterLab itself.
"""

from __future__ import annotations

import asyncio
from itertools import groupby

import pytest
from tornado import web

from kioskhub.hub.schema.site import Site
from kioskhub.spawner.kube import KioskKubeSpawner, PodNotStarting
from kioskhub.spawner.pod_manifest import to_dict
from tests.kube_sim import KubernetesSimulation
from tests.support.kube_cluster import kube_spawner, use_kubeconfig
from tests.support.podman import build_base_image, pods_with_label

pytestmark = pytest.mark.integration

NAMESPACE = "kioskhub"
UNPULLABLE = "localhost/kube-sim-not-here:1"
IDLE = ["python3", "-c", "import signal; signal.pause()"]
"""A server that only waits: the container runs until it is stopped or killed."""


@pytest.fixture(scope="module")
def image() -> str:
    return build_base_image().image


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    with KubernetesSimulation() as simulation:
        simulation.add_namespace(NAMESPACE)
        use_kubeconfig(monkeypatch, simulation.write_kubeconfig(tmp_path / "kubeconfig"))
        yield simulation


@pytest.fixture
def site(tmp_path, image) -> Site:
    (tmp_path / "data").mkdir()
    return Site.model_validate(
        {
            "spawner": {"backend": "kubernetes"},
            "environments": [
                {"name": "default", "display_name": "Python 3", "default": True},
                {"name": "root", "kind": "image", "image": UNPULLABLE},
            ],
            "profiles": [
                {"name": "small", "cpu": 0.5, "memory": "1Gi", "default": True},
                {"name": "gpu", "cpu": 4, "memory": "16Gi", "gpu": {"count": 1, "type": "A100"},
                 "groups": ["physics"]},
                {"name": "gpu-anywhere", "cpu": 1, "memory": "2Gi", "gpu": {"count": 1}},
            ],
            "data_mounts": [{"name": "data", "source": str(tmp_path / "data"),
                             "mount_path": "/data"}],
            "pods": {
                "image": image,
                "namespace": NAMESPACE,
                "home": {"storage_class": "standard", "capacity": "5Gi"},
                "data_volumes": [{"mount": "data", "type": "hostPath",
                                  "path": str(tmp_path / "data")}],
                "profiles": [
                    {"name": "gpu",
                     "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                      "effect": "NoSchedule"}]},
                ],
            },
        }
    )


def run(scenario):
    """Run ``scenario`` on a fresh loop, then stop KubeSpawner's shared reflectors."""

    async def main():
        try:
            return await scenario()
        finally:
            await KioskKubeSpawner._stop_all_reflectors()

    return asyncio.run(main())


UNBOUND = "pod has unbound immediate PersistentVolumeClaims"


def without_unbound_claims(seen: list) -> list:
    """``seen`` (messages or events) without the scheduler's wait for the home claim."""
    return [item for item in seen if UNBOUND not in item]


async def start_with_progress(spawner) -> tuple[str, list[str]]:
    messages: list[str] = []
    start = spawner.start()

    async def follow():
        async for event in spawner.progress():
            messages.append(event["message"])

    follower = asyncio.ensure_future(follow())
    url = await start
    await asyncio.wait_for(follower, 10)
    return url, messages


async def wait_for(condition, timeout: float = 10):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)
    return result


def test_start_poll_stop_runs_the_shared_manifest_through_the_api(cluster, site, image, tmp_path):
    async def scenario():
        spawner = kube_spawner(site, "ada", options={"environment": "default", "profile": "small"})
        url, progress = await start_with_progress(spawner)
        running = await spawner.poll()
        sent = to_dict(await spawner.get_pod_manifest())
        state = spawner.get_state()
        await spawner.stop()
        return url, progress, running, sent, state, await spawner.poll()

    url, progress, running, sent, state, after_stop = run(scenario)

    assert url.startswith("http://127.244.0.") and url.endswith(":8888")
    assert running is None
    assert after_stop == 1
    # The claim's volume may still be provisioned when the scheduler first looks at the pod.
    assert without_unbound_claims([m.split(" ", 2)[2] for m in progress]) == [
        f"Successfully assigned {NAMESPACE}/jupyter-ada to sim-cpu-1",
        f'Container image "{image}" already present on machine',
        "Created container notebook",
        "Started container notebook",
    ]
    events = cluster.events_for("jupyter-ada", NAMESPACE)
    assert without_unbound_claims(events) == [
        ("Normal", "Scheduled", f"Successfully assigned {NAMESPACE}/jupyter-ada to sim-cpu-1"),
        ("Normal", "Pulled", f'Container image "{image}" already present on machine'),
        ("Normal", "Created", "Created container notebook"),
        ("Normal", "Started", "Started container notebook"),
        ("Normal", "Killing", "Stopping container notebook"),
    ]
    assert [change for change, _ in groupby(cluster.watch_history("pods", "jupyter-ada"))] == [
        ("ADDED", "Pending"),
        ("MODIFIED", "Pending"),
        ("MODIFIED", "Running"),
        ("DELETED", "Running"),
    ]
    assert "jupyter-ada" not in pods_in_podman(cluster)
    assert "jupyter-ada" not in cluster.objects("pods", NAMESPACE)
    claim = cluster.objects("persistentvolumeclaims", NAMESPACE)["claim-ada"]
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["resources"] == {"requests": {"storage": "5Gi"}}
    assert claim["metadata"]["labels"]["kioskhub/user"] == "ada"
    assert state == {
        "kubespawner_version": state["kubespawner_version"],
        "pod_name": "jupyter-ada",
        "namespace": NAMESPACE,
        "dns_name": f"jupyter-ada.{NAMESPACE}.svc.cluster.local",
        "pvc_name": "claim-ada",
    }
    assert ("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", "") in cluster.requests
    assert any(m == "DELETE" and p.endswith("/pods/jupyter-ada") for m, p, _ in cluster.requests)
    assert cluster.warnings == []
    container = sent["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert container["image"] == image
    assert container["args"] == ["jupyterhub-singleuser"]
    assert container["resources"] == {
        "limits": {"cpu": "500m", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "1Gi"},
    }
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert sent["spec"]["securityContext"]["runAsNonRoot"] is True
    assert sent["spec"]["volumes"] == [
        {"name": "home", "persistentVolumeClaim": {"claimName": "claim-ada"}},
        {"name": "data-data", "hostPath": {"path": str(tmp_path / "data"), "type": "Directory"}},
    ]
    assert env["JUPYTERHUB_API_TOKEN"] == "token-of-ada"
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://0.0.0.0:8888/"
    assert env["KIOSKHUB_PROFILE"] == "small"
    labels = sent["metadata"]["labels"]
    assert labels["component"] == "singleuser-server"
    assert labels["hub.jupyter.org/username"] == "ada"
    assert labels["kioskhub/environment"] == "default"


def test_an_image_the_cluster_cannot_pull_fails_the_start_saying_so(cluster, site):
    """The pod the cluster stored is the manifest the builder made; its image cannot be
    pulled, and the start ends at once with podman's own reason, not after its timeout."""

    async def scenario():
        spawner = kube_spawner(site, "ada", options={"environment": "root", "profile": "small"})
        began = asyncio.get_running_loop().time()
        with pytest.raises(PodNotStarting) as failed:
            await spawner.start()
        took = asyncio.get_running_loop().time() - began
        built = to_dict(await spawner.get_pod_manifest())
        stored = cluster.objects("pods", NAMESPACE)["jupyter-ada"]
        await spawner.stop(now=True)
        return built, stored, failed.value, took

    built, stored, failed, took = run(scenario)

    assert stored["spec"].pop("nodeName") == "sim-cpu-1"
    assert stored["spec"] == built["spec"]
    assert {k: stored["metadata"][k] for k in ("name", "labels", "annotations")} == (
        {k: built["metadata"][k] for k in ("name", "labels", "annotations")}
    )
    assert stored["spec"]["containers"][0]["image"] == UNPULLABLE
    waiting = stored["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] in ("ErrImagePull", "ImagePullBackOff")
    podman_says = (
        f"initializing source docker://{UNPULLABLE}: pinging container registry localhost"
    )
    assert failed.jupyterhub_message.startswith(
        f"Your server could not start: the cluster cannot pull the image {UNPULLABLE} "
    )
    assert podman_says in failed.jupyterhub_message
    assert "Choose another environment" in failed.jupyterhub_message
    assert took < 25  # well before the start's 30 seconds
    events = cluster.events_for("jupyter-ada", NAMESPACE)
    assert ("Normal", "Pulling", f'Pulling image "{UNPULLABLE}"') in events
    assert ("Warning", "Failed", "Error: ErrImagePull") in events
    assert any(m.startswith(f'Failed to pull image "{UNPULLABLE}": {podman_says}')
               for _, _, m in events)
    assert "jupyter-ada" not in cluster.objects("pods", NAMESPACE)


def test_gpu_profile_lands_on_the_gpu_node_with_its_gpu(cluster, site):
    async def scenario():
        spawner = kube_spawner(site, "ada", groups=["physics"], options={"profile": "gpu"},
                               cmd=IDLE)
        await spawner.start()
        pod = cluster.objects("pods", NAMESPACE)["jupyter-ada"]
        await spawner.stop(now=True)
        return pod

    pod = run(scenario)

    assert pod["spec"]["nodeName"] == "sim-gpu-1"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"
    }


def test_an_unschedulable_pod_fails_the_start_with_the_schedulers_reason(cluster, site):
    async def scenario():
        spawner = kube_spawner(site, "bob", options={"profile": "gpu-anywhere"}, start_timeout=5)
        with pytest.raises(PodNotStarting) as failed:
            await spawner.start()
        messages = [event["message"] async for event in spawner.progress()]
        phase = cluster.objects("pods", NAMESPACE)["jupyter-bob"]["status"]["phase"]
        await spawner.stop(now=True)
        return messages, phase, failed.value

    messages, phase, failed = run(scenario)

    reason = (
        "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, "
        "1 node(s) had untolerated taint {nvidia.com/gpu: present}."
    )
    assert failed.jupyterhub_message == (
        "Your server could not start: no node of the cluster can run the profile "
        f"gpu-anywhere now ({reason}). Choose a smaller profile, or try again later; the "
        "site's admins can tell whether nodes for this profile exist."
    )
    assert any(m.endswith(f"[Warning] {reason}") for m in messages), messages
    assert phase == "Pending"
    assert ("Warning", "FailedScheduling", reason) in cluster.events_for("jupyter-bob", NAMESPACE)
    assert "jupyter-bob" not in cluster.objects("pods", NAMESPACE)


def test_a_server_that_exits_is_reported_by_poll_and_its_pod_removed(cluster, site):
    async def scenario():
        spawner = kube_spawner(site, "ada", cmd=IDLE)
        await spawner.start()
        await asyncio.to_thread(cluster.kill, "jupyter-ada", NAMESPACE)

        async def exited():
            status = await spawner.poll()
            return None if status is None else (status,)

        (status,) = await wait_for(exited)
        await wait_for(lambda: _gone(cluster, "jupyter-ada"))
        return status

    assert run(scenario) == 137
    assert ("MODIFIED", "Failed") in cluster.watch_history("pods", "jupyter-ada")
    assert "jupyter-ada" not in pods_in_podman(cluster)


def pods_in_podman(cluster) -> list[str]:
    """The names (as the API knows them) of the cluster's pods that podman runs."""
    prefix = f"ksim-{cluster.cluster_id}-{NAMESPACE}-"
    return [p["Name"].removeprefix(prefix)
            for p in pods_with_label(f"kube-sim/cluster={cluster.cluster_id}")]


async def _gone(cluster, name):
    return name not in cluster.objects("pods", NAMESPACE)


def test_a_restarted_hub_readopts_the_running_pod(cluster, site):
    async def scenario():
        first = kube_spawner(site, "ada", options={"profile": "small"}, cmd=IDLE)
        await first.start()
        state = first.get_state()
        await KioskKubeSpawner._stop_all_reflectors()  # the old hub process is gone
        again = kube_spawner(site, "ada")
        again.load_state(state)
        running = await again.poll()
        await again.stop(now=True)
        return running, await again.poll()

    assert run(scenario) == (None, 1)
    assert cluster.watch_history("pods", "jupyter-ada")[-1][0] == "DELETED"


def test_profile_list_is_generated_from_the_site_and_gated_by_groups(cluster, site):
    async def scenario():
        ada = kube_spawner(site, "ada", groups=["physics"])
        bob = kube_spawner(site, "bob")
        lists = ada.site_profile_list(), bob.site_profile_list()
        form = await bob._render_options_form_dynamically(bob)
        bob.user_options = {"profile": "gpu"}
        with pytest.raises(web.HTTPError) as refused:
            await bob.load_user_options()
        bob.user_options = {"environment": "root", "profile": "small"}
        await bob.load_user_options()
        chosen = (bob.image, bob.cpu_limit, bob.mem_limit)
        parsed = (
            bob.options_from_form({"profile": ["small"],
                                   "profile-option-small--environment": ["root"]}),
            bob.options_from_query({"environment": ["root"]}),
        )
        return lists, form, refused.value, chosen, parsed

    (for_ada, for_bob), form, refused, chosen, parsed = run(scenario)

    assert [p["slug"] for p in for_ada] == ["small", "gpu", "gpu-anywhere"]
    assert [p["slug"] for p in for_bob] == ["small", "gpu-anywhere"]
    assert for_bob[0]["kubespawner_override"] == {
        "cpu_limit": 0.5, "cpu_guarantee": 0.5, "mem_limit": 2**30, "mem_guarantee": 2**30
    }
    assert for_bob[0]["profile_options"]["environment"]["choices"] == {
        "default": {"display_name": "Python 3", "default": True,
                    "kubespawner_override": {"image": site.pods.image}},
        "root": {"display_name": "root", "default": False,
                 "kubespawner_override": {"image": UNPULLABLE}},
    }
    assert 'value="small"' in form and 'value="gpu-anywhere"' in form
    assert 'value="gpu"' not in form
    assert refused.status_code == 400
    assert "only for the groups physics" in refused.log_message % refused.args
    assert chosen == (UNPULLABLE, 0.5, 2**30)
    assert parsed == ({"profile": "small", "environment": "root"}, {"environment": "root"})


def with_identity(site: Site) -> Site:
    auth = {"identity": {"source": "claims", "gids_claim": "gidNumbers",
                         "trust_shared_password": True}}  # fmt: skip
    return Site.model_validate({**site.model_dump(mode="json", exclude_unset=True), "auth": auth})


def test_the_pod_runs_as_the_users_lab_identity_and_no_volume_is_re_owned(cluster, site):
    claims = {"uidNumber": 20001, "gidNumber": 20000, "gidNumbers": [20100, 4]}

    async def scenario():
        spawner = kube_spawner(
            with_identity(site), "ada", options={"profile": "small"},
            auth_state={"oauth_user": claims}, cmd=IDLE,
        )  # fmt: skip
        await spawner.start()
        stored = cluster.objects("pods", NAMESPACE)["jupyter-ada"]
        await spawner.stop(now=True)
        return stored

    stored = run(scenario)

    assert stored["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "supplementalGroups": [20100],
    }
    container = stored["spec"]["containers"][0]["securityContext"]
    assert (container["runAsUser"], container["runAsGroup"]) == (20001, 20000)


def test_a_uid_of_0_gets_a_clear_message_and_no_pod_or_claim(cluster, site):
    async def scenario():
        spawner = kube_spawner(
            with_identity(site), "eve", options={"profile": "small"},
            auth_state={"oauth_user": {"uidNumber": 0, "gidNumber": 0}},
        )  # fmt: skip
        with pytest.raises(web.HTTPError) as refused:
            await spawner.load_user_options()
        with pytest.raises(web.HTTPError):
            await spawner.start()
        return refused.value

    refused = run(scenario)

    assert refused.status_code == 400
    assert refused.log_message % refused.args == (
        "Your lab identity has uid 0, below 1000: ids below that are root and the machine's "
        "system accounts, which a server never runs as. Ask the site's admins to check your "
        "account in the directory."
    )
    assert "jupyter-eve" not in cluster.objects("pods", NAMESPACE)
    assert "claim-eve" not in cluster.objects("persistentvolumeclaims", NAMESPACE)
