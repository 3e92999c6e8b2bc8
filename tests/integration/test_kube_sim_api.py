"""The Kubernetes API simulation answers as an API server does, through kubernetes_asyncio.

Status codes and Status bodies, list resourceVersions, label selectors, and watches that
resume from a resourceVersion or end with 410 Expired when it is too old: what KubeSpawner's
reflectors rely on.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.rest import ApiException

from tests.kube_sim import KubernetesSimulation

pytestmark = pytest.mark.integration


def pod(name: str, labels: dict | None = None, port=8888) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "notebook", "image": "busybox:1",
                                 "ports": [{"containerPort": port}]}]},
    }


@pytest.fixture
def cluster():
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


def test_watch_resumes_after_a_resource_version_and_sees_every_phase(cluster, tmp_path):
    async def scenario(api):
        await api.create_namespaced_pod("default", pod("before"))
        listed = await api.list_namespaced_pod("default")
        await api.create_namespaced_pod("default", pod("watched"))
        seen = []
        stream = watch.Watch()
        async with stream.stream(api.list_namespaced_pod, "default",
                                 resource_version=listed.metadata.resource_version,
                                 timeout_seconds=2) as events:
            async for event in events:
                obj = event["raw_object"]
                seen.append((event["type"], obj["metadata"]["name"],
                             (obj.get("status") or {}).get("phase")))
                if ("MODIFIED", "watched", "Running") in seen:
                    break
        return seen

    seen = with_api(cluster, tmp_path, scenario)

    assert all(name != "before" or kind != "ADDED" for kind, name, _ in seen)
    watched = [(kind, phase) for kind, name, phase in seen if name == "watched"]
    assert watched == [("ADDED", "Pending"), ("MODIFIED", "Pending"), ("MODIFIED", "Running")]


def test_watch_from_a_too_old_resource_version_is_410_expired(tmp_path):
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
