"""The Kubernetes API simulation answers as an API server does, through kubernetes_asyncio.

Status codes and Status bodies, list resourceVersions, label selectors, and watches that
resume from a resourceVersion or end with 410 Expired when it is too old: what KubeSpawner's
reflectors rely on. Pods run for real (podman, the site base image): the watched phases are
those of a real container, whose state, restarts and exit code the API reports.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.rest import ApiException

from tests.kube_sim import KubernetesSimulation
from tests.support.podman import build_base_image, pods_with_label

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image() -> str:
    return build_base_image().image


def pod(name: str, labels: dict | None = None, port=8888, command=("sleep", "infinity"),
        image: str = "localhost/kube-sim-not-here:1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "notebook", "image": image, "command": list(command),
                                 "imagePullPolicy": "Never",
                                 "ports": [{"containerPort": port}]}]},
    }


@pytest.fixture
def cluster(image):
    with KubernetesSimulation() as simulation:
        yield simulation


def with_api(cluster, tmp_path, scenario, token=None):
    async def main():
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(cluster.write_kubeconfig(tmp_path / "kubeconfig")),
            client_configuration=configuration,
        )
        if token:
            configuration.api_key = {"authorization": f"Bearer {token}"}
        async with client.ApiClient(configuration) as api_client:
            return await scenario(client.CoreV1Api(api_client))

    return asyncio.run(main())


def status_of(error: ApiException) -> dict:
    return json.loads(error.body)


def test_errors_are_status_objects_with_the_api_servers_codes(cluster, tmp_path):
    async def scenario(api):
        errors = {}
        for name, call in {
            "missing": api.read_namespaced_pod("nope", "default"),
            "namespace": api.list_namespaced_pod("no-such-namespace"),
        }.items():
            with pytest.raises(ApiException) as caught:
                await call
            errors[name] = caught.value
        await api.create_namespaced_pod("default", pod("twice"))
        with pytest.raises(ApiException) as caught:
            await api.create_namespaced_pod("default", pod("twice"))
        errors["conflict"] = caught.value
        with pytest.raises(ApiException) as caught:
            await api.create_namespaced_pod("default", pod("bad-port", port="eighty"))
        errors["invalid"] = caught.value
        with pytest.raises(ApiException) as caught:
            await api.create_namespaced_pod("default", pod("Not_A_Name"))
        errors["name"] = caught.value
        return errors

    errors = with_api(cluster, tmp_path, scenario)

    assert errors["missing"].status == 404
    assert status_of(errors["missing"]) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "nope" not found', "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"}, "code": 404,
    }
    assert status_of(errors["namespace"])["message"] == 'namespaces "no-such-namespace" not found'
    assert errors["conflict"].status == 409
    assert status_of(errors["conflict"])["reason"] == "AlreadyExists"
    assert errors["invalid"].status == 422
    invalid = status_of(errors["invalid"])
    assert invalid["reason"] == "Invalid"
    assert invalid["details"]["causes"][0]["field"] == "spec.containers.0.ports.0.containerPort"
    assert status_of(errors["name"])["message"].startswith(
        'Pod "Not_A_Name" is invalid: metadata.name: Invalid value'
    )


def test_a_wrong_token_is_unauthorized(cluster, tmp_path):
    async def scenario(api):
        with pytest.raises(ApiException) as caught:
            await api.list_namespaced_pod("default")
        return caught.value

    error = with_api(cluster, tmp_path, scenario, token="not-the-token")

    assert error.status == 401
    assert status_of(error)["reason"] == "Unauthorized"


def test_lists_carry_a_resource_version_and_honour_label_selectors(cluster, tmp_path):
    async def scenario(api):
        await api.create_namespaced_pod("default", pod("a", {"component": "singleuser-server"}))
        await api.create_namespaced_pod("default", pod("b", {"component": "other"}))
        selected = await api.list_namespaced_pod(
            "default", label_selector="component=singleuser-server"
        )
        others = await api.list_namespaced_pod(
            "default", label_selector="component!=singleuser-server"
        )
        return selected, others

    selected, others = with_api(cluster, tmp_path, scenario)

    assert [p.metadata.name for p in selected.items] == ["a"]
    assert [p.metadata.name for p in others.items] == ["b"]
    listed_at = int(selected.metadata.resource_version)
    assert listed_at >= int(selected.items[0].metadata.resource_version)


def test_watch_resumes_after_a_resource_version_and_sees_every_phase(cluster, tmp_path, image):
    """The container really runs, answers on its pod address and exits with its own status."""
    serve = ("python3", "-c", "import http.server, sys; s = http.server.HTTPServer(('', 8888), "
             "http.server.SimpleHTTPRequestHandler); s.handle_request(); sys.exit(3)")

    async def scenario(api):
        await api.create_namespaced_pod("default", pod("before", image=image))
        listed = await api.list_namespaced_pod("default")
        await api.create_namespaced_pod("default", pod("watched", image=image, command=serve))
        seen, answer = [], None
        stream = watch.Watch()
        async with stream.stream(api.list_namespaced_pod, "default",
                                 resource_version=listed.metadata.resource_version,
                                 timeout_seconds=60) as events:
            async for event in events:
                obj = event["raw_object"]
                if obj["metadata"]["name"] != "watched":
                    continue
                seen.append((event["type"], obj["status"].get("phase")))
                if obj["status"].get("phase") == "Running" and answer is None:
                    answer = await asyncio.to_thread(get_until_answered, obj["status"]["podIP"])
                if obj["status"].get("phase") == "Failed":
                    return seen, answer, obj["status"]
        raise AssertionError(f"the pod did not end: {seen}")

    seen, answer, status = with_api(cluster, tmp_path, scenario)

    assert seen == [("ADDED", "Pending"), ("MODIFIED", "Pending"), ("MODIFIED", "Running"),
                    ("MODIFIED", "Failed")]
    assert answer == 200
    assert status["podIP"].startswith("127.244.0.")
    (container,) = status["containerStatuses"]
    terminated = container["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert container["restartCount"] == 0 and container["ready"] is False
    assert container["containerID"].startswith("podman://")
    reasons = [reason for _, reason, _ in cluster.events_for("watched")]
    assert reasons == ["Scheduled", "Pulled", "Created", "Started"]


def get_until_answered(address: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(f"http://{address}:8888/", timeout=5).status_code
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_watch_from_a_too_old_resource_version_is_410_expired(tmp_path, image):
    cluster = KubernetesSimulation(history_limit=10).start()

    async def scenario(api):
        for index in range(3):
            await api.create_namespaced_pod("default", pod(f"p{index}"))
        await asyncio.sleep(cluster.step * 8)
        stream = watch.Watch()
        with pytest.raises(ApiException) as caught:
            async with stream.stream(api.list_namespaced_pod, "default",
                                     resource_version="1", timeout_seconds=2) as events:
                async for _ in events:
                    pass
        return caught.value

    try:
        error = with_api(cluster, tmp_path, scenario)
    finally:
        cluster.stop()

    assert error.status == 410
    assert "too old resource version: 1" in error.reason


def test_a_pod_that_would_reach_the_machine_is_forbidden_and_never_runs(cluster, tmp_path):
    """The kubelet runs pods with root's podman: Pod Security admission keeps privileged
    containers, added capabilities and the host's namespaces out, before anything runs."""
    privileged = pod("privileged")
    privileged["spec"]["containers"][0]["securityContext"] = {
        "privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
    host = pod("host-network")
    host["spec"].update(hostNetwork=True, hostPID=True)

    async def scenario(api):
        errors = []
        for body in (privileged, host):
            with pytest.raises(ApiException) as caught:
                await api.create_namespaced_pod("default", body)
            errors.append(caught.value)
        return errors, await api.list_namespaced_pod("default")

    (refused_privileged, refused_host), listed = with_api(cluster, tmp_path, scenario)

    assert refused_privileged.status == 403
    assert status_of(refused_privileged)["message"] == (
        'pods "privileged" is forbidden: violates PodSecurity "baseline:latest": privileged '
        '(container "notebook" must not set securityContext.privileged=true), non-default '
        "capabilities (containers must not include SYS_ADMIN in "
        "securityContext.capabilities.add)"
    )
    assert status_of(refused_host)["reason"] == "Forbidden"
    assert "host namespaces (hostNetwork=true, hostPID=true)" in status_of(refused_host)["message"]
    assert listed.items == []
    assert pods_with_label(f"kube-sim/cluster={cluster.cluster_id}") == []
    kubeconfig = tmp_path / "kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600


def test_restarts_and_volumes_the_node_cannot_mount_are_reported(cluster, tmp_path, image):
    """A container that keeps failing is restarted by podman as its restartPolicy says, and
    the API counts it; an NFS volume is a FailedMount, and the pod never runs."""
    crashing = pod("crashing", image=image, command=("sh", "-c", "sleep 0.5; exit 3"))
    crashing["spec"]["restartPolicy"] = "OnFailure"
    nfs = pod("nfs", image=image)
    nfs["spec"]["volumes"] = [{"name": "data", "nfs": {"server": "nfs.lab.org",
                                                       "path": "/export"}}]

    async def scenario(api):
        await api.create_namespaced_pod("default", crashing)
        await api.create_namespaced_pod("default", nfs)
        deadline = time.monotonic() + 60
        while True:
            found = await api.read_namespaced_pod("crashing", "default")
            statuses = found.status.container_statuses or []
            if statuses and statuses[0].restart_count >= 2:
                break
            assert time.monotonic() < deadline, found.status
            await asyncio.sleep(0.2)
        return found, await api.read_namespaced_pod("nfs", "default")

    restarted, unmounted = with_api(cluster, tmp_path, scenario)

    assert restarted.status.phase == "Running"
    assert unmounted.status.phase == "Pending"
    assert ("Warning", "FailedMount",
            'MountVolume.SetUp failed for volume "data" : this node mounts hostPath, '
            "persistentVolumeClaim and emptyDir volumes, not nfs") in cluster.events_for("nfs")
    running = [p["Name"] for p in pods_with_label(f"kube-sim/cluster={cluster.cluster_id}")]
    assert running == [f"ksim-{cluster.cluster_id}-default-crashing"]
