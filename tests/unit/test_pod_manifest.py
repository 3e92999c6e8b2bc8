"""The Pod manifest builder: LaunchSpec → Pod and home claim, compared with literal dicts.

Every manifest built here is also validated by kubernetes-validate against the schema of a
current Kubernetes release (strict: unknown fields are errors), the way an API server would
check it.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from kioskhub.hub.schema.pods import DataVolume, HomeVolume, PodProfile, PodSettings, Toleration
from kioskhub.spawner.launch_spec import ChoiceError, EnvironmentSpec, LaunchSpec, MountSpec
from kioskhub.spawner.pod_manifest import (
    PodTarget,
    build_home_claim,
    build_pod,
    cpu_quantity,
    environment_image,
    label_value,
    memory_quantity,
)

KUBERNETES_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
"""A current release, and the newest one kubernetes-validate knows."""


def valid(manifest: dict) -> dict:
    """``manifest``, after kubernetes-validate accepted it for every version above."""
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    return manifest


def spec(**changes) -> LaunchSpec:
    values = dict(
        username="ada",
        environment=EnvironmentSpec("default", "venv"),
        profile="small",
        cpu=0.5,
        memory_bytes=400 * 2**20,
        home=Path("/srv/kioskhub/homes/ada"),
        default_url="/lab",
        mounts=(MountSpec("data", Path("/srv/central-data"), "/data", True),),
        env={"KIOSKHUB_USER": "ada", "KIOSKHUB_PROFILE": "small"},
    )
    values.update(changes)
    return LaunchSpec(**values)


TARGET = PodTarget(
    pod_name="jupyter-ada",
    home_claim="claim-ada",
    image="registry.example.org/lab/notebook:2024.1",
    command=("jupyterhub-singleuser", "--debug"),
    server_env={"JUPYTERHUB_API_TOKEN": "secret", "JUPYTERHUB_USER": "ada"},
)


def test_cpu_profile_pod_in_full():
    pod = valid(build_pod(spec(), PodSettings(), TARGET))

    assert pod == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "jupyter-ada",
            "annotations": {"kioskhub/username": "ada"},
            "labels": {
                "app.kubernetes.io/name": "kioskhub",
                "app.kubernetes.io/component": "singleuser-server",
                "component": "singleuser-server",
                "kioskhub/user": "ada",
                "kioskhub/server": "",
                "kioskhub/environment": "default",
                "kioskhub/profile": "small",
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "securityContext": {
                "fsGroup": 100,
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "notebook",
                    "image": "registry.example.org/lab/notebook:2024.1",
                    "imagePullPolicy": "IfNotPresent",
                    "args": ["jupyterhub-singleuser", "--debug"],
                    "env": [
                        {"name": "HOME", "value": "/home/jovyan"},
                        {"name": "JUPYTERHUB_API_TOKEN", "value": "secret"},
                        {"name": "JUPYTERHUB_USER", "value": "ada"},
                        {"name": "KIOSKHUB_DATA_DIR", "value": "/data"},
                        {
                            "name": "KIOSKHUB_DATA_MOUNTS",
                            "value": '[{"name": "data", "paths": ["/data"]}]',
                        },
                        {"name": "KIOSKHUB_PROFILE", "value": "small"},
                        {"name": "KIOSKHUB_USER", "value": "ada"},
                    ],
                    "ports": [{"name": "notebook-port", "containerPort": 8888}],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "400Mi"},
                        "requests": {"cpu": "500m", "memory": "400Mi"},
                    },
                    "securityContext": {
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "home", "mountPath": "/home/jovyan"},
                        {"name": "data-data", "mountPath": "/data", "readOnly": True},
                    ],
                    "workingDir": "/home/jovyan",
                }
            ],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": "claim-ada"}},
                {
                    "name": "data-data",
                    "hostPath": {"path": "/srv/central-data", "type": "Directory"},
                },
            ],
        },
    }


GPU_PODS = PodSettings(
    profiles=(
        PodProfile(
            name="gpu",
            node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            tolerations=(
                Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
                Toleration(key="lab/dedicated", value="physics"),
            ),
        ),
    )
)


def test_gpu_profile_gets_gpu_limits_node_selector_and_tolerations():
    pod = valid(
        build_pod(spec(profile="gpu", cpu=8, memory_bytes=64 * 10**9, gpu_count=2,
                       gpu_type="A100"), GPU_PODS, TARGET)
    )

    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "lab/dedicated", "operator": "Equal", "value": "physics"},
    ]
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "8", "memory": "64G", "nvidia.com/gpu": "2"},
        "requests": {"cpu": "8", "memory": "64G"},
    }
    assert pod["metadata"]["labels"]["kioskhub/profile"] == "gpu"


def test_cpu_profile_is_not_sent_to_gpu_nodes():
    pod = valid(build_pod(spec(), GPU_PODS, TARGET))

    assert "nodeSelector" not in pod["spec"]
    assert "tolerations" not in pod["spec"]
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"]["limits"]


MOUNTS = (
    MountSpec("data", Path("/srv/central-data"), "/data", True),
    MountSpec("scratch", Path("/srv/scratch"), "/scratch", False),
    MountSpec("archive", Path("/srv/archive"), "/archive", True),
    MountSpec("beam_nfs", Path("/srv/beam"), "/beam", True),
    MountSpec("ceph", Path("/srv/ceph"), "/ceph", False),
)
VOLUMES = PodSettings(
    data_volumes=(
        DataVolume(mount="scratch", type="hostPath", path="/mnt/fast/scratch"),
        DataVolume(mount="archive", type="pvc", claim_name="lab-archive"),
        DataVolume(mount="beam_nfs", type="nfs", server="nfs.lab.example.org",
                   path="/export/beam"),
        DataVolume(mount="ceph", type="csi", driver="cephfs.csi.ceph.com",
                   volume_attributes={"clusterID": "lab", "fsName": "data"}),
    )
)


def test_data_mounts_become_hostpath_pvc_nfs_and_csi_volumes_with_read_only_per_config():
    pod = valid(build_pod(spec(mounts=MOUNTS), VOLUMES, TARGET))

    assert pod["spec"]["volumes"][1:] == [
        {"name": "data-data", "hostPath": {"path": "/srv/central-data", "type": "Directory"}},
        {"name": "data-scratch", "hostPath": {"path": "/mnt/fast/scratch", "type": "Directory"}},
        {"name": "data-archive",
         "persistentVolumeClaim": {"claimName": "lab-archive", "readOnly": True}},
        {"name": "data-beam-nfs",
         "nfs": {"server": "nfs.lab.example.org", "path": "/export/beam", "readOnly": True}},
        {"name": "data-ceph",
         "csi": {"driver": "cephfs.csi.ceph.com", "readOnly": False,
                 "volumeAttributes": {"clusterID": "lab", "fsName": "data"}}},
    ]
    assert pod["spec"]["containers"][0]["volumeMounts"][1:] == [
        {"name": "data-data", "mountPath": "/data", "readOnly": True},
        {"name": "data-scratch", "mountPath": "/scratch", "readOnly": False},
        {"name": "data-archive", "mountPath": "/archive", "readOnly": True},
        {"name": "data-beam-nfs", "mountPath": "/beam", "readOnly": True},
        {"name": "data-ceph", "mountPath": "/ceph", "readOnly": False},
    ]


def test_home_claim_in_full():
    claim = valid(build_home_claim(spec(), PodSettings(), "claim-ada"))

    assert claim == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "claim-ada",
            "annotations": {"kioskhub/username": "ada"},
            "labels": {
                "app.kubernetes.io/name": "kioskhub",
                "app.kubernetes.io/component": "singleuser-storage",
                "component": "singleuser-storage",
                "kioskhub/user": "ada",
            },
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    }


def test_home_claim_with_a_storage_class():
    pods = PodSettings(
        home=HomeVolume(storage_class="ceph-rbd", capacity="50Gi",
                        access_modes=("ReadWriteOncePod",))
    )
    claim = valid(build_home_claim(spec(), pods, "claim-ada"))

    assert claim["spec"] == {
        "accessModes": ["ReadWriteOncePod"],
        "resources": {"requests": {"storage": "50Gi"}},
        "storageClassName": "ceph-rbd",
    }


def test_podman_publishes_the_server_port_on_loopback_only():
    target = PodTarget(pod_name="kh-1a2b3c4d-ada", home_claim="kh-1a2b3c4d-home-ada",
                       image="localhost/kioskhub-base:abc", publish=("127.0.0.1", 40123),
                       labels={"kioskhub/hub": "1a2b3c4d"})
    pod = valid(build_pod(spec(), PodSettings(), target))

    assert pod["spec"]["containers"][0]["ports"] == [
        {"name": "notebook-port", "containerPort": 8888, "hostIP": "127.0.0.1",
         "hostPort": 40123, "protocol": "TCP"}
    ]
    assert pod["metadata"]["labels"]["kioskhub/hub"] == "1a2b3c4d"


def test_server_environment_wins_over_the_choice_and_home_is_the_pod_home():
    pods = PodSettings(home_path="/home/scientist", uid=4242, gid=4242)
    pod = valid(build_pod(spec(env={"HOME": "/wrong", "JUPYTERHUB_USER": "mallory"}), pods,
                          TARGET))
    container = pod["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}

    assert env["HOME"] == "/home/scientist"
    assert env["JUPYTERHUB_USER"] == "ada"
    assert container["securityContext"]["runAsUser"] == 4242
    assert container["workingDir"] == "/home/scientist"
    assert pod["spec"]["securityContext"]["fsGroup"] == 4242


@pytest.mark.parametrize(
    "username, server, expected",
    [
        ("ada", "", ("ada", "")),
        ("grace.hopper", "gpu-run", ("grace.hopper", "gpu-run")),
        ("bob-", "x_", ("bob---671cc3ed", "x---3e16f53f")),
    ],
)
def test_labels_are_valid_for_every_username(username, server, expected):
    pod = valid(build_pod(spec(username=username, server_name=server), PodSettings(), TARGET))
    labels = pod["metadata"]["labels"]

    assert (labels["kioskhub/user"], labels["kioskhub/server"]) == expected
    assert pod["metadata"]["annotations"] == {"kioskhub/username": username}


def test_label_value_keeps_valid_values():
    assert label_value("ada") == "ada"
    assert label_value("") == ""
    assert label_value("a--b") != "a--b"


@pytest.mark.parametrize(
    "cores, text", [(1, "1"), (0.5, "500m"), (2.25, "2250m"), (8, "8"), (0.1, "100m")]
)
def test_cpu_quantity(cores, text):
    assert cpu_quantity(cores) == text


@pytest.mark.parametrize(
    "size, text",
    [(400 * 2**20, "400Mi"), (2 * 10**9, "2G"), (2**30, "1Gi"), (1536 * 2**20, "1536Mi"),
     (1001, "1001"), (64 * 10**9, "64G"), (3 * 2**40, "3Ti")],
)
def test_memory_quantity(size, text):
    assert memory_quantity(size) == text


def test_image_of_each_kind_of_environment():
    own = EnvironmentSpec("default", "venv")
    image = EnvironmentSpec("analysis", "image", image="registry.example.org/analysis:1")

    assert environment_image(spec(environment=own), PodSettings(), "base:1") == "base:1"
    assert environment_image(spec(environment=own), PodSettings(image="site:2"), "base:1") == (
        "site:2"
    )
    assert environment_image(spec(environment=image), PodSettings(), "base:1") == (
        "registry.example.org/analysis:1"
    )
    with pytest.raises(ChoiceError, match="is a venv on the hub's machine"):
        environment_image(
            spec(environment=EnvironmentSpec("v", "venv", prefix=Path("/opt/v"))),
            PodSettings(),
            "base:1",
        )
    with pytest.raises(ChoiceError, match="has not been built into an image yet"):
        environment_image(spec(environment=EnvironmentSpec("r", "repository")), PodSettings(),
                          "base:1")
    with pytest.raises(ChoiceError, match="kioskhub image build-base"):
        environment_image(spec(environment=own), PodSettings(), None)


@pytest.mark.parametrize(
    "path, value",
    [
        (("spec", "containers", 0, "ports", 0, "containerPort"), "8888"),
        (("spec", "containers", 0, "cpuLimit"), "1"),
        (("spec", "volumes", 1, "hostPath", "path"), None),
    ],
)
def test_kubernetes_validate_rejects_what_an_api_server_would(path, value):
    pod = build_pod(spec(), PodSettings(), TARGET)
    parent = pod
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value

    with pytest.raises(kubernetes_validate.ValidationError):
        valid(pod)
