"""The volume provisioner of the simulated cluster: a claim of a known StorageClass is bound
to a podman volume made for it (``ProvisioningSucceeded``); a claim of an unknown class stays
Pending (``ProvisioningFailed``). Deleting the claim deletes its volume.
"""

from __future__ import annotations

import asyncio

from .events import record_event
from .model import ClusterModel
from .node_pod import claim_volume
from .podman_runtime import PodmanRuntime


class Provisioner:
    def __init__(self, model: ClusterModel, runtime: PodmanRuntime, step: float,
                 storage_classes=("standard",)):
        self.model = model
        self.runtime = runtime
        self.step = step
        self.storage_classes = set(storage_classes)

    def event(self, obj: dict, reason: str, message: str, **kwargs) -> dict:
        return record_event(self.model, obj, reason, message, **kwargs)

    async def bind_claim(self, namespace: str, name: str) -> None:
        await asyncio.sleep(self.step)
        claim = self.model.find("persistentvolumeclaims", namespace, name)
        if claim is None:
            return
        storage_class = claim["spec"].get("storageClassName") or "standard"
        if storage_class not in self.storage_classes:
            claim["status"] = {"phase": "Pending"}
            self.model.update("persistentvolumeclaims", claim)
            self.event(claim, "ProvisioningFailed",
                       f'storageclass.storage.k8s.io "{storage_class}" not found',
                       type_="Warning", component="persistentvolume-controller")
            return
        await self.runtime.create_volume(claim_volume(self.runtime.cluster, namespace, name))
        if (claim := self.model.find("persistentvolumeclaims", namespace, name)) is None:
            return
        claim["spec"]["storageClassName"] = storage_class
        claim["spec"]["volumeName"] = f"pvc-{claim['metadata']['uid']}"
        claim["status"] = {
            "phase": "Bound",
            "accessModes": claim["spec"].get("accessModes", []),
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
        }
        self.model.update("persistentvolumeclaims", claim)
        self.event(claim, "ProvisioningSucceeded",
                   f"Successfully provisioned volume {claim['spec']['volumeName']}",
                   component=f"{storage_class}-provisioner")

    async def remove_volume(self, claim: dict) -> None:
        metadata = claim["metadata"]
        await self.runtime.remove_volume(
            claim_volume(self.runtime.cluster, metadata["namespace"], metadata["name"])
        )
