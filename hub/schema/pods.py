"""The ``pods:`` section of the site config: container pods, on podman or on Kubernetes.

One Pod manifest serves both backends (``kioskhub.spawner.pod_manifest``); this section holds what
the manifest needs beyond the user's choice: the image of KioskHub's own environment, the
account servers run as, the home volume, how each data mount reaches a pod (hostPath, a
PVC, NFS or a CSI driver), where GPU profiles are scheduled (node selector and
tolerations per resource profile), and which registries podman may reach without TLS.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .choices import Name
from .section import Section

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"
REGISTRY_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$"
"""A registry as image references name it: host or host:port."""
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class HomeVolume(Section):
    """Each user's persistent home: a PersistentVolumeClaim per user."""

    storage_class: str | None = Field(
        None,
        description="Kubernetes: the StorageClass of the home claims; empty means the "
        "cluster's default. podman keeps each claim as a volume bound to the user's folder "
        "under home.root.",
    )
    capacity: str = Field(
        "10Gi", pattern=QUANTITY_PATTERN, description="Size requested for each home, e.g. 10Gi."
    )
    access_modes: tuple[Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"], ...] = Field(
        ("ReadWriteOnce",), description="Access modes of the home claims."
    )


class DataVolume(Section):
    """How the data mount ``mount`` reaches a pod. Mounts not listed use hostPath."""

    mount: Name = Field(description="Name of a data mount (see data_mounts[].name).")
    type: Literal["hostPath", "pvc", "nfs", "csi"] = Field(
        "hostPath",
        description="hostPath: a folder on the node (podman: this machine); pvc: an "
        "existing PersistentVolumeClaim; nfs: an NFS export; csi: a CSI driver "
        "(pvc, nfs and csi need the kubernetes backend).",
    )
    path: str | None = Field(
        None,
        description="hostPath: the folder on the node (empty: the mount's source); nfs: "
        "the exported path.",
    )
    claim_name: str | None = Field(None, description="pvc: the claim's name.")
    server: str | None = Field(None, description="nfs: the NFS server's host name or address.")
    driver: str | None = Field(None, description="csi: the CSI driver, e.g. cephfs.csi.ceph.com.")
    volume_attributes: dict[str, str] = Field(
        {}, description="csi: the driver's volume attributes."
    )

    @model_validator(mode="after")
    def _fields_of_type(self) -> DataVolume:
        needed = {"pvc": ("claim_name",), "nfs": ("server", "path"), "csi": ("driver",)}
        missing = [key for key in needed.get(self.type, ()) if not getattr(self, key)]
        if missing:
            raise ValueError(f"a {self.type} volume needs {' and '.join(missing)}")
        allowed = {
            "hostPath": {"path"},
            "pvc": {"claim_name"},
            "nfs": {"server", "path"},
            "csi": {"driver", "volume_attributes"},
        }[self.type]
        extra = [
            key
            for key in ("path", "claim_name", "server", "driver", "volume_attributes")
            if getattr(self, key) and key not in allowed
        ]
        if extra:
            raise ValueError(f"{', '.join(extra)} is not used by a {self.type} volume")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"path must be absolute, got {self.path!r}")
        return self


class Toleration(Section):
    key: str | None = Field(None, description="Taint key, e.g. nvidia.com/gpu; empty with Exists.")
    operator: Literal["Equal", "Exists"] = Field("Equal", description="Equal or Exists.")
    value: str | None = Field(None, description="Taint value, for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty means all."
    )


class PodProfile(Section):
    """Where the pods of the resource profile ``name`` are scheduled (Kubernetes)."""

    name: Name = Field(description="Name of a resource profile (see profiles[].name).")
    node_selector: dict[str, str] = Field(
        {}, description="Node labels a pod of this profile needs, e.g. the GPU model."
    )
    tolerations: tuple[Toleration, ...] = Field(
        (), description="Taints that pods of this profile tolerate, e.g. of GPU nodes."
    )

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if not re.fullmatch(LABEL_KEY_PATTERN, key)]
        if bad:
            raise ValueError(f"not a Kubernetes label key: {', '.join(bad)}")
        return value


class PodSettings(Section):
    image: str | None = Field(
        None,
        description="Image of KioskHub's own environment (the default one). Empty: the "
        "site base image that `kioskhub image build-base` builds (podman). The kubernetes "
        "backend needs an image its nodes can pull.",
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        "IfNotPresent", description="When the node pulls the image."
    )
    uid: int = Field(1000, ge=1, description="User id servers run as (never root).")
    gid: int = Field(100, ge=0, description="Group id servers run as, and of the volumes.")
    home_path: str = Field(
        "/home/jovyan", pattern=r"^/[^\s]*[^/\s]$", description="Where the home is mounted."
    )
    home: HomeVolume = Field(HomeVolume(), description="The per-user home claims.")
    data_volumes: tuple[DataVolume, ...] = Field(
        (), description="How data mounts reach pods; a mount not listed here is a hostPath."
    )
    profiles: tuple[PodProfile, ...] = Field(
        (),
        description="Node selectors and tolerations per resource profile, e.g. for GPU nodes.",
    )
    gpu_resource: str = Field(
        "nvidia.com/gpu", description="Extended resource a GPU profile's pods request."
    )
    namespace: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="kubernetes: the namespace of the pods and claims; empty means the "
        "hub's own (in a cluster) or 'default'.",
    )
    insecure_registries: tuple[str, ...] = Field(
        (),
        description="podman: registries (host or host:port, e.g. localhost:5000) that serve "
        "images over plain HTTP or without a trusted certificate, such as a registry on "
        "loopback; images from them are pulled with --tls-verify=false. builder.registry "
        "joins them when builder.registry_insecure is on. Every other "
        "registry's TLS is verified. Kubernetes nodes take this from their container "
        "runtime's own registry settings.",
    )
    hub_connect_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s:]+(:\d{1,5})?/?$",
        description="kubernetes: the URL at which user pods reach the hub's API (scheme, "
        "host, port), e.g. the hub's Service, http://hub.kioskhub.svc:8081; empty: the "
        "hub's own address. podman pods reach the hub's loopback by themselves.",
    )

    park_minutes: int = Field(
        0,
        ge=0,
        le=7 * 24 * 60,
        description="podman: minutes a user's pod stays parked after their server stops, "
        "ready for their next start of the same environment and profile (its Python has "
        "imported the server and waits for the start's token): about 120 MiB of memory per "
        "parked pod. 0 (the default) parks nothing.",
    )

    @field_validator("insecure_registries")
    @classmethod
    def _registry_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for registry in value:
            if not re.fullmatch(REGISTRY_PATTERN, registry):
                raise ValueError(
                    f"{registry!r} is not a registry: write its host or host:port, without "
                    "a scheme or a path, e.g. localhost:5000"
                )
        repeated = sorted({r for r in value if value.count(r) > 1})
        if repeated:
            raise ValueError(f"listed twice: {', '.join(repeated)}")
        return value


def pod_settings_problems(
    pods: PodSettings, backend: str, mounts: list[str], profiles: list[str]
) -> list[str]:
    """What is wrong with ``pods`` given the backend, the data mounts and the profiles."""
    problems = []
    for volume in pods.data_volumes:
        if volume.mount not in mounts:
            problems.append(
                f"pods.data_volumes: {volume.mount} is not a data mount; the data mounts "
                f"are: {', '.join(mounts) or '(none)'}"
            )
        if backend == "podman" and volume.type != "hostPath":
            problems.append(
                f"pods.data_volumes: {volume.mount} is a {volume.type} volume, which needs "
                "the kubernetes backend; podman mounts folders of this machine (hostPath)"
            )
    named = [volume.mount for volume in pods.data_volumes]
    problems += [
        f"pods.data_volumes: {name} is listed twice"
        for name in sorted({n for n in named if named.count(n) > 1})
    ]
    for profile in pods.profiles:
        if profile.name not in profiles:
            problems.append(
                f"pods.profiles: {profile.name} is not a resource profile; the profiles "
                f"are: {', '.join(profiles)}"
            )
    if backend != "podman" and pods.park_minutes:
        problems.append(
            f"pods.park_minutes: parked pods are made by the podman backend; this site's "
            f"spawner.backend is {backend}: set pods.park_minutes to 0"
        )
    if backend == "kubernetes" and not pods.image:
        problems.append(
            "pods.image: the kubernetes backend needs the image of KioskHub's own "
            "environment, a reference its nodes can pull (e.g. quay.io/jupyter/base-notebook)"
        )
    return problems
