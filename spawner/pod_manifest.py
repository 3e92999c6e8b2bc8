"""LaunchSpec → a Kubernetes Pod and the home PersistentVolumeClaim.

Pure: built with KubeSpawner's own object builders (``kubespawner.objects.make_pod`` and
``make_pvc``); ``pod_model`` gives the kubernetes_asyncio model that KubeSpawner sends,
``build_pod`` the same manifest as the dict the Kubernetes API takes. The same manifest is
sent to a cluster by ``KioskKubeSpawner`` and run on this machine by ``podman kube play``
(``PodmanSpawner``), so a local run exercises exactly what a cluster gets. The only
difference a backend may ask for is ``publish``: podman publishes the server's port on
the host's loopback (``hostIP``/``hostPort``), which a cluster never needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient, V1PersistentVolumeClaim, V1Pod
from kubespawner.objects import make_pod, make_pvc
from kubespawner.slugs import is_valid_label, safe_slug

from kioskhub.hub.schema.pods import DataVolume, PodSettings

from .launch_spec import ChoiceError, LaunchSpec, MountSpec, data_mounts_env

SERVER_PORT = 8888
CONTAINER_NAME = "notebook"
LABEL_PREFIX = "kioskhub"
COMPONENT = "singleuser-server"


@dataclass(frozen=True)
class PodTarget:
    """Where one server's pod goes: the names its backend chose, and what it runs."""

    pod_name: str
    home_claim: str
    image: str
    command: tuple[str, ...] = ("jupyterhub-singleuser",)
    server_env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    publish: tuple[str, int] | None = None
    """(host address, host port) to publish the server's port on; podman only."""


def cpu_quantity(cores: float) -> str:
    """1.0 → '1', 0.5 → '500m' (the Kubernetes quantity for CPU cores)."""
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(size: int) -> str:
    """Bytes as the shortest exact Kubernetes quantity: 419430400 → '400Mi', 2*10**9 → '2G'."""
    exact = [str(size)] + [
        f"{size // factor}{unit}"
        for unit, factor in (
            ("Ti", 2**40),
            ("Gi", 2**30),
            ("Mi", 2**20),
            ("Ki", 2**10),
            ("T", 10**12),
            ("G", 10**9),
            ("M", 10**6),
            ("k", 10**3),
        )
        if size % factor == 0
    ]
    return min(exact, key=len)


def label_value(text: str) -> str:
    """``text`` as a valid label value (kept when already valid, else slugged and hashed)."""
    return text if is_valid_label(text) and "--" not in text else safe_slug(text)


def pod_labels(spec: LaunchSpec) -> dict[str, str]:
    """The labels every KioskHub pod carries: who, what, and which component."""
    return {
        "app.kubernetes.io/name": "kioskhub",
        "app.kubernetes.io/component": COMPONENT,
        "component": COMPONENT,
        f"{LABEL_PREFIX}/user": label_value(spec.username),
        f"{LABEL_PREFIX}/server": label_value(spec.server_name),
        f"{LABEL_PREFIX}/environment": label_value(spec.environment.name),
        f"{LABEL_PREFIX}/profile": label_value(spec.profile),
    }


def environment_image(spec: LaunchSpec, pods: PodSettings, base_image: str | None) -> str:
    """The image that runs ``spec``'s environment; ChoiceError when it has none."""
    environment = spec.environment
    if environment.kind == "image" and environment.image:
        return environment.image
    if environment.kind == "venv" and environment.prefix is None:
        image = pods.image or base_image
        if image:
            return image
        raise ChoiceError(
            "This site has no image for KioskHub's own environment: set pods.image, or "
            "build the site base image with `kioskhub image build-base`."
        )
    if environment.kind == "repository":
        raise ChoiceError(
            f"The environment {environment.name!r} has not been built into an image yet. "
            "Build it first."
        )
    raise ChoiceError(
        f"The environment {environment.name!r} is a venv on the hub's machine, which a pod "
        "cannot use; choose an image environment."
    )


def _volume_name(mount: MountSpec) -> str:
    return safe_slug(f"data-{mount.name}".replace("_", "-"))


def data_volume(mount: MountSpec, volume: DataVolume | None) -> dict[str, Any]:
    """The Pod volume of one data mount, as the site config says it reaches the node."""
    name = _volume_name(mount)
    kind = volume.type if volume else "hostPath"
    if kind == "pvc":
        return {
            "name": name,
            "persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": mount.read_only},
        }
    if kind == "nfs":
        return {
            "name": name,
            "nfs": {"server": volume.server, "path": volume.path, "readOnly": mount.read_only},
        }
    if kind == "csi":
        csi: dict[str, Any] = {"driver": volume.driver, "readOnly": mount.read_only}
        if volume.volume_attributes:
            csi["volumeAttributes"] = dict(volume.volume_attributes)
        return {"name": name, "csi": csi}
    path = (volume.path if volume else None) or str(mount.source)
    return {"name": name, "hostPath": {"path": path, "type": "Directory"}}


def pod_env(spec: LaunchSpec, pods: PodSettings, server_env: dict[str, str]) -> dict[str, str]:
    """The server's environment: the choice's, the hub's (which wins), home and data."""
    env = {**spec.env, **server_env, "HOME": pods.home_path}
    if spec.mounts:
        env["KIOSKHUB_DATA_DIR"] = spec.mounts[0].mount_path
    env |= data_mounts_env((m.name, (m.mount_path,)) for m in spec.mounts)
    return env


def build_pod(spec: LaunchSpec, pods: PodSettings, target: PodTarget) -> dict[str, Any]:
    """The Pod manifest of ``spec`` (a dict in the Kubernetes API's own shape)."""
    return to_dict(pod_model(spec, pods, target))


def pod_model(spec: LaunchSpec, pods: PodSettings, target: PodTarget) -> V1Pod:
    """The Pod of ``spec`` as KubeSpawner's ``make_pod`` model (what ``build_pod`` serialises)."""
    by_mount = {volume.mount: volume for volume in pods.data_volumes}
    placement = next((p for p in pods.profiles if p.name == spec.profile), None)
    volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": target.home_claim}}]
    volumes += [data_volume(m, by_mount.get(m.name)) for m in spec.mounts]
    mounts = [{"name": "home", "mountPath": pods.home_path}]
    mounts += [
        {"name": _volume_name(m), "mountPath": m.mount_path, "readOnly": m.read_only}
        for m in spec.mounts
    ]
    gpus = {pods.gpu_resource: str(spec.gpu_count)} if spec.gpu_count else None
    uid, gid, supplemental, fs_gid = pod_identity(spec, pods)
    container_extra: dict[str, Any] = {}
    if target.publish:
        host_ip, host_port = target.publish
        container_extra["ports"] = [
            {
                "name": "notebook-port",
                "containerPort": SERVER_PORT,
                "hostIP": host_ip,
                "hostPort": host_port,
                "protocol": "TCP",
            }
        ]
    return make_pod(
        name=target.pod_name,
        cmd=list(target.command),
        port=SERVER_PORT,
        image=target.image,
        image_pull_policy=pods.image_pull_policy,
        node_selector=dict(placement.node_selector) if placement else None,
        uid=uid,
        gid=gid,
        fs_gid=fs_gid,
        supplemental_gids=supplemental,
        allow_privilege_escalation=False,
        container_security_context={"capabilities": {"drop": ["ALL"]}},
        pod_security_context={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        env=pod_env(spec, pods, target.server_env),
        working_dir=pods.home_path,
        volumes=volumes,
        volume_mounts=mounts,
        labels={**pod_labels(spec), **target.labels},
        annotations={f"{LABEL_PREFIX}/username": spec.username},
        cpu_limit=cpu_quantity(spec.cpu),
        cpu_guarantee=cpu_quantity(spec.cpu),
        mem_limit=memory_quantity(spec.memory_bytes),
        mem_guarantee=memory_quantity(spec.memory_bytes),
        extra_resource_limits=gpus,
        tolerations=[_toleration(t) for t in placement.tolerations] if placement else None,
        extra_container_config=container_extra or None,
        extra_pod_config={"restartPolicy": "Never"},
    )


def pod_identity(spec: LaunchSpec, pods: PodSettings):
    """(runAsUser, runAsGroup, supplementalGroups, fsGroup) of ``spec``'s pod.

    The site's ``pods.uid``/``pods.gid`` (also the volumes' group), or the user's lab
    identity. A lab identity gets no fsGroup: the kubelet would re-own the volumes it
    manages (a data claim too) to the user's group, and the central data's own
    permissions are what must decide.
    """
    identity = spec.identity
    if identity is None:
        return pods.uid, pods.gid, None, pods.gid
    return identity.uid, identity.gid, list(identity.supplementary_gids) or None, None


def _toleration(toleration) -> dict[str, str]:
    return {
        key: value
        for key, value in (
            ("key", toleration.key),
            ("operator", toleration.operator),
            ("value", toleration.value),
            ("effect", toleration.effect),
        )
        if value is not None
    }


def build_home_claim(spec: LaunchSpec, pods: PodSettings, name: str) -> dict[str, Any]:
    """The PersistentVolumeClaim of ``spec.username``'s home (a dict)."""
    return to_dict(home_claim_model(spec, pods, name))


def home_claim_model(spec: LaunchSpec, pods: PodSettings, name: str) -> V1PersistentVolumeClaim:
    """The home claim as KubeSpawner's ``make_pvc`` model."""
    return make_pvc(
        name=name,
        storage_class=pods.home.storage_class,
        access_modes=list(pods.home.access_modes),
        selector=None,
        storage=pods.home.capacity,
        labels={
            "app.kubernetes.io/name": "kioskhub",
            "app.kubernetes.io/component": "singleuser-storage",
            "component": "singleuser-storage",
            f"{LABEL_PREFIX}/user": label_value(spec.username),
        },
        annotations={f"{LABEL_PREFIX}/username": spec.username},
    )


def to_dict(model: Any) -> dict[str, Any]:
    """A kubernetes_asyncio model as the JSON-ready dict the API takes (no I/O)."""
    return _SERIALISER.sanitize_for_serialization(model)


class _Serialiser(ApiClient):
    """Only ``sanitize_for_serialization``: no REST client, so no connection or loop."""

    def __init__(self) -> None:  # noqa: D401 (deliberately skips ApiClient's set-up)
        pass


_SERIALISER = _Serialiser()
