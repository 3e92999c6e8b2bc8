"""Events about objects, as the cluster's components record them (``kubectl get events``)."""

from __future__ import annotations

import uuid

from .model import ClusterModel, now


def record_event(model: ClusterModel, obj: dict, reason: str, message: str, *,
                 type_: str = "Normal", component: str = "kubelet",
                 host: str | None = None) -> dict:
    """Store an Event about ``obj`` (a watch event for KubeSpawner's event reflector)."""
    metadata = obj["metadata"]
    stamp = now()
    body = {
        "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}"},
        "involvedObject": {
            "kind": obj["kind"],
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "uid": metadata["uid"],
            "apiVersion": "v1",
            "resourceVersion": metadata["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "source": {"component": component, **({"host": host} if host else {})},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": type_,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host or "",
    }
    return model.create("events", metadata["namespace"], body)
