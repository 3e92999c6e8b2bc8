"""What the simulated node runs for a pod the API server stored: pure.

A real kubelet hands the pod to its container runtime, which names the sandbox, attaches it
to the pod network and mounts each volume. Here the runtime is ``podman kube play``, so the
pod is rewritten the way a runtime sees it, and nothing else changes:

- podman has no namespaces: the sandbox is ``ksim-<cluster>-<namespace>-<name>``, labelled
  with the cluster, and its hostname stays the pod's name, as on a cluster;
- the pod network is the loopback range 127.244.<node>.0/24 (as flannel's 10.244.0.0/16,
  but on this machine only): each container port is published on the pod's address, so
  ``podIP:containerPort`` reaches the container from the hub as it would in a cluster;
- a claim is mounted as the podman volume its provisioner made (``claim_volume``);
- hostPath, persistentVolumeClaim and emptyDir volumes can be mounted; others (NFS, CSI)
  cannot on this node, and ``unmountable_volumes`` says which, for a FailedMount event.
"""

from __future__ import annotations

import copy
from typing import Any

CLUSTER_LABEL = "kube-sim/cluster"
MOUNTABLE = ("hostPath", "persistentVolumeClaim", "emptyDir")


def sandbox_name(cluster: str, namespace: str, name: str) -> str:
    return f"ksim-{cluster}-{namespace}-{name}"


def claim_volume(cluster: str, namespace: str, claim: str) -> str:
    """The podman volume that backs the claim ``namespace/claim``."""
    return f"ksim-{cluster}-{namespace}-{claim}"


def unmountable_volumes(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(volume name, its type) of each volume this node cannot mount."""
    found = []
    for volume in pod["spec"].get("volumes") or []:
        kind = next((key for key in volume if key != "name"), "")
        if kind not in MOUNTABLE:
            found.append((volume["name"], kind))
    return found


def node_pod(pod: dict[str, Any], cluster: str, address: str) -> dict[str, Any]:
    """The document ``podman kube play`` runs for ``pod``, on the pod address ``address``."""
    metadata = pod["metadata"]
    namespace = metadata["namespace"]
    spec = copy.deepcopy(pod["spec"])
    spec.pop("nodeName", None)
    spec["hostname"] = metadata["name"]
    for volume in spec.get("volumes") or []:
        claim = volume.get("persistentVolumeClaim")
        if claim:
            claim["claimName"] = claim_volume(cluster, namespace, claim["claimName"])
    for container in spec["containers"]:
        for port in container.get("ports") or []:
            port["hostIP"] = address
            port["hostPort"] = port["containerPort"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": sandbox_name(cluster, namespace, metadata["name"]),
            "labels": {**(metadata.get("labels") or {}), CLUSTER_LABEL: cluster},
            "annotations": dict(metadata.get("annotations") or {}),
        },
        "spec": spec,
    }
