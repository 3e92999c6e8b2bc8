"""What the podman backend adds to the shared Pod manifest: names, the hub's address, storage.

Pure. podman has no namespaces, so names carry a tag of the hub (two hubs on one machine
may both have a user 'ada'); the pod reaches the hub's loopback API and the Dask Gateway's
loopback ports through slirp4netns' host-loopback address; the home claim is provisioned
as a podman volume bound to the user's folder under ``home.root``, as a storage class
would provision it on a cluster.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kubespawner.slugs import safe_slug

from .launch_spec import LaunchSpec
from .pod_manifest import CONTAINER_NAME, LABEL_PREFIX

HOST_LOOPBACK = "10.0.2.2"
"""The host's 127.0.0.1 as a pod sees it (slirp4netns with allow_host_loopback)."""
POD_NETWORK = "slirp4netns:allow_host_loopback=true"
RUNNING = ("running", "created", "configured", "initialized")
"""Container states of a server that is starting or running."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
STATE_VERSION = 1


def hub_tag(state_dir: Path) -> str:
    """8 hex digits that tell this hub's pods from another hub's on the same machine."""
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class PodmanNames:
    """The names of one server's pod, its container and its home volume."""

    pod: str
    home_claim: str
    hub: str

    @property
    def container(self) -> str:
        """podman names a played pod's container ``<pod>-<container>``."""
        return f"{self.pod}-{CONTAINER_NAME}"


def podman_names(spec: LaunchSpec, tag: str) -> PodmanNames:
    user = safe_slug(spec.username)
    server = f"--{safe_slug(spec.server_name)}" if spec.server_name else ""
    return PodmanNames(
        pod=f"kh-{tag}-{user}{server}", home_claim=home_claim_name(spec.username, tag), hub=tag
    )


def home_claim_name(username: str, tag: str) -> str:
    """The podman volume of ``username``'s home (one for all their servers)."""
    return f"kh-{tag}-home-{safe_slug(username)}"


def hub_labels(names: PodmanNames) -> dict[str, str]:
    return {f"{LABEL_PREFIX}/hub": names.hub}


def pod_reachable_url(url: str) -> str:
    """``url`` with a loopback host replaced by the host-loopback address pods can reach."""
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK_HOSTS:
        return url
    netloc = HOST_LOOPBACK + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


POD_REACHED_ADDRESSES = (
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_ACTIVITY_URL",
    "DASK_GATEWAY__ADDRESS",
    "DASK_GATEWAY__PROXY_ADDRESS",
    "KIOSKHUB_GALLERY_URL",
)
"""Addresses that code inside the pod connects to: the hub's API, the gateway's API
and scheduler proxy, and the gallery's API. ``DASK_GATEWAY__PUBLIC_ADDRESS`` is for
browsers and stays as it is."""


def pod_reachable_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the loopback addresses of the hub and the gateway as a pod sees them."""
    fixed = dict(env)
    for key in POD_REACHED_ADDRESSES:
        if key in fixed:
            fixed[key] = pod_reachable_url(fixed[key])
    return fixed


def bound_claim(claim: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The home claim with podman's annotations that bind its volume to ``folder``."""
    metadata = dict(claim["metadata"])
    metadata["annotations"] = {
        **metadata.get("annotations", {}),
        "volume.podman.io/driver": "local",
        "volume.podman.io/type": "none",
        "volume.podman.io/device": str(folder),
        "volume.podman.io/mount-options": "bind",
    }
    return {**claim, "metadata": metadata}


OWNED_MOUNT = "/kioskhub-home-volume"
"""Where ``own_home_volume_args`` mounts a new home volume: a path no image has."""


def own_home_volume_args(claim: str, owner: tuple[int, int], image: str) -> tuple[str, ...]:
    """``podman run`` arguments that mount a new home volume once, as its owner, in a
    container that does nothing.

    On a named volume's first mount podman re-owns its folder to the process's uid and gid,
    then to the image's own folder at the mount path (``/home/jovyan``: 1000:100), which
    would hand a lab user's home to whoever holds uid 1000. Mounted first here, as the
    owner and at a path no image has, the volume keeps the owner the home was given.
    """
    uid, gid = owner
    return (
        "run", "--rm", "--pull", "never", "--network", "none", "--user", f"{uid}:{gid}",
        "--cap-drop", "all", "--security-opt", "no-new-privileges", "--pids-limit", "16",
        "--memory", "64m", "--timeout", "60", "--entrypoint", "/bin/true",
        "--volume", f"{claim}:{OWNED_MOUNT}", image,
    )  # fmt: skip


def pod_state(names: PodmanNames, host_port: int, image: str) -> dict[str, Any]:
    """What the hub keeps to find a running pod again after a restart (versioned)."""
    return {
        "podman": {
            "version": STATE_VERSION,
            "pod": names.pod,
            "home_claim": names.home_claim,
            "hub": names.hub,
            "host_port": host_port,
            "image": image,
        }
    }


def names_from_state(state: dict[str, Any]) -> tuple[PodmanNames, int, str] | None:
    """The pod names, host port and image from ``pod_state``; None for unknown versions."""
    saved = state.get("podman") or {}
    if saved.get("version") != STATE_VERSION:
        return None
    names = PodmanNames(pod=saved["pod"], home_claim=saved["home_claim"], hub=saved["hub"])
    return names, int(saved["host_port"]), saved["image"]
