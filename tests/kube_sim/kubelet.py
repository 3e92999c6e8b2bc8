"""What happens to objects after the API server stored them: scheduler, kubelet, provisioner.

- A pod is scheduled onto a node whose labels match its ``nodeSelector``, whose taints it
  tolerates and which has the GPUs it asks for, else it stays Pending with a
  ``FailedScheduling`` event that says why (as kube-scheduler words it). A pod whose claim
  does not exist or is not bound yet waits.
- The kubelet pulls the image (images listed in ``missing_images`` fail with ErrImagePull),
  creates and starts the container, and marks the pod Running and Ready with a podIP.
- A deleted pod gets its ``deletionTimestamp``, a ``Killing`` event, and disappears after
  its grace period (shortened: the simulation runs in ``step`` seconds).
- A claim is bound by the provisioner of its StorageClass (``ProvisioningSucceeded``), or
  stays Pending with ``ProvisioningFailed`` when the class does not exist.

Each step takes ``step`` seconds, so tests see every phase in watch events.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field

from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from .model import ClusterModel, now

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass
class SimNode:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    gpus: int = 0
    ip: str = "192.168.49.2"


DEFAULT_NODES = (
    SimNode("sim-cpu-1", {"kubernetes.io/hostname": "sim-cpu-1"}, ip="192.168.49.2"),
    SimNode(
        "sim-gpu-1",
        {"kubernetes.io/hostname": "sim-gpu-1",
         "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        taints=[{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}],
        gpus=4,
        ip="192.168.49.3",
    ),
)


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for toleration in tolerations or []:
        operator = toleration.get("operator", "Equal")
        key_ok = toleration.get("key") in (None, "", taint["key"]) if operator == "Exists" \
            else toleration.get("key") == taint["key"]
        value_ok = operator == "Exists" or toleration.get("value") == taint.get("value")
        effect_ok = toleration.get("effect") in (None, "", taint["effect"])
        if key_ok and value_ok and effect_ok:
            return True
    return False


def gpus_of(pod: dict) -> int:
    return sum(
        int((c.get("resources") or {}).get("limits", {}).get(GPU_RESOURCE, 0))
        for c in pod["spec"]["containers"]
    )


def qos_class(pod: dict) -> str:
    resources = [c.get("resources") or {} for c in pod["spec"]["containers"]]
    if all(r.get("limits") and r.get("requests") and
           {k: v for k, v in r["limits"].items() if k in ("cpu", "memory")}
           == {k: v for k, v in r["requests"].items() if k in ("cpu", "memory")}
           for r in resources):
        return "Guaranteed"
    return "Burstable" if any(r.get("limits") or r.get("requests") for r in resources) \
        else "BestEffort"


class Kubelet:
    """The control loops of the simulated cluster, driven by the model's create hooks."""

    def __init__(self, model: ClusterModel, nodes=DEFAULT_NODES, step: float = 0.05,
                 storage_classes=("standard",)):
        self.model = model
        self.nodes = list(nodes)
        self.step = step
        self.storage_classes = set(storage_classes)
        self.missing_images: set[str] = set()
        self._addresses = itertools.count(10)
        self._tasks: set[asyncio.Task] = set()
        self._containers: dict[str, HTTPServer] = {}
        model.on_created.append(self._created)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _created(self, plural: str, obj: dict) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if plural == "pods":
            self._spawn(self._run_pod(*key))
        elif plural == "persistentvolumeclaims":
            self._spawn(self._bind_claim(*key))

    # ---- events ----------------------------------------------------------------------

    def event(self, obj: dict, reason: str, message: str, *, type_: str = "Normal",
              component: str = "kubelet", host: str | None = None) -> dict:
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
        return self.model.create("events", metadata["namespace"], body)

    # ---- pods ------------------------------------------------------------------------

    def _live_pod(self, namespace: str, name: str, uid: str) -> dict | None:
        pod = self.model.find("pods", namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid or pod["metadata"].get(
            "deletionTimestamp"
        ):
            return None
        return pod

    async def _run_pod(self, namespace: str, name: str) -> None:
        pod = self.model.get("pods", namespace, name)
        uid = pod["metadata"]["uid"]
        node = await self._schedule(namespace, name, uid)
        if node is None:
            return
        image = pod["spec"]["containers"][0]["image"]
        await asyncio.sleep(self.step)
        if (pod := self._live_pod(namespace, name, uid)) is None:
            return
        self.event(pod, "Pulling", f'Pulling image "{image}"', host=node.name)
        await asyncio.sleep(self.step)
        if (pod := self._live_pod(namespace, name, uid)) is None:
            return
        if image in self.missing_images:
            self._image_pull_failed(pod, image, node)
            return
        self.event(pod, "Pulled", f'Successfully pulled image "{image}" in 1.2s', host=node.name)
        self.event(pod, "Created", "Created container notebook", host=node.name)
        self.event(pod, "Started", "Started container notebook", host=node.name)
        self._running(pod, node)

    async def _schedule(self, namespace: str, name: str, uid: str) -> SimNode | None:
        """Wait for the pod's claims, then bind it to a node; None if it cannot be placed."""
        while True:
            await asyncio.sleep(self.step)
            if (pod := self._live_pod(namespace, name, uid)) is None:
                return None
            waiting = self._unbound_claims(pod)
            if not waiting:
                break
            if pod["status"].get("conditions") is None:
                self._unschedulable(pod, waiting[0])
        node, reason = self._place(pod)
        if node is None:
            self._unschedulable(pod, reason)
            return None
        pod["spec"]["nodeName"] = node.name
        pod["status"]["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}
        ]
        self.model.update("pods", pod)
        self.event(pod, "Scheduled",
                   f"Successfully assigned {namespace}/{name} to {node.name}",
                   component="default-scheduler")
        return node

    def _unbound_claims(self, pod: dict) -> list[str]:
        reasons = []
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            found = self.model.find("persistentvolumeclaims", pod["metadata"]["namespace"], claim)
            if found is None:
                reasons.append(f'persistentvolumeclaim "{claim}" not found')
            elif (found.get("status") or {}).get("phase") != "Bound":
                reasons.append("pod has unbound immediate PersistentVolumeClaims")
        return reasons

    def _place(self, pod: dict) -> tuple[SimNode | None, str]:
        selector = pod["spec"].get("nodeSelector") or {}
        tolerations = pod["spec"].get("tolerations") or []
        wanted_gpus = gpus_of(pod)
        refusals: dict[str, int] = {}
        for node in self.nodes:
            if any(node.labels.get(k) != v for k, v in selector.items()):
                why = "node(s) didn't match Pod's node affinity/selector"
            elif untolerated := [t for t in node.taints if t["effect"] in
                                 ("NoSchedule", "NoExecute") and not tolerates(tolerations, t)]:
                taint = untolerated[0]
                why = f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
            elif wanted_gpus > node.gpus - self._gpus_used(node):
                why = f"Insufficient {GPU_RESOURCE}"
            else:
                return node, ""
            refusals[why] = refusals.get(why, 0) + 1
        reasons = ", ".join(f"{count} {why}" for why, count in sorted(refusals.items()))
        return None, f"0/{len(self.nodes)} nodes are available: {reasons}."

    def _gpus_used(self, node: SimNode) -> int:
        return sum(
            gpus_of(pod)
            for pod in self.model.objects["pods"].values()
            if pod["spec"].get("nodeName") == node.name
            and (pod.get("status") or {}).get("phase") in ("Pending", "Running")
        )

    def _unschedulable(self, pod: dict, reason: str) -> None:
        pod["status"]["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": reason, "lastTransitionTime": now()}
        ]
        self.model.update("pods", pod)
        self.event(pod, "FailedScheduling", reason, type_="Warning",
                   component="default-scheduler")

    def _image_pull_failed(self, pod: dict, image: str, node: SimNode) -> None:
        self.event(pod, "Failed", f'Failed to pull image "{image}": rpc error: code = '
                   f'NotFound desc = failed to pull and unpack image "{image}": not found',
                   type_="Warning", host=node.name)
        self.event(pod, "Failed", "Error: ErrImagePull", type_="Warning", host=node.name)
        pod["status"]["containerStatuses"] = [
            self._container_status(pod, {"waiting": {"reason": "ErrImagePull",
                                                     "message": f"{image}: not found"}},
                                   ready=False)
        ]
        self.model.update("pods", pod)

    def _container_status(self, pod: dict, state: dict, ready: bool) -> dict:
        image = pod["spec"]["containers"][0]["image"]
        return {
            "name": pod["spec"]["containers"][0]["name"],
            "image": image,
            "imageID": f"{image}@sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "containerID": f"containerd://{uuid.uuid4().hex}",
            "ready": ready,
            "started": "running" in state,
            "restartCount": 0,
            "state": state,
        }

    def _running(self, pod: dict, node: SimNode) -> None:
        # Loopback addresses: a connection to a pod never leaves this machine.
        address = f"127.244.{self.nodes.index(node)}.{next(self._addresses)}"
        stamp = now()
        pod["status"].update(
            phase="Running",
            hostIP=node.ip,
            podIP=address,
            podIPs=[{"ip": address}],
            startTime=stamp,
            conditions=[
                {"type": kind, "status": "True", "lastTransitionTime": stamp}
                for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            containerStatuses=[
                self._container_status(pod, {"running": {"startedAt": stamp}}, ready=True)
            ],
        )
        self._start_container(pod, address)
        self.model.update("pods", pod)

    def _start_container(self, pod: dict, address: str) -> None:
        """Answer HTTP at the pod's address and port, as the server in the container would."""
        ports = pod["spec"]["containers"][0].get("ports") or [{"containerPort": 8888}]
        server = HTTPServer(Application([(r".*", ContainerAnswer)]))
        server.listen(ports[0]["containerPort"], address)
        self._containers[pod["metadata"]["uid"]] = server

    def stop_containers(self) -> None:
        """Free every pod address, so the next simulation in this process can use it."""
        for server in self._containers.values():
            server.stop()
        self._containers.clear()

    def _stop_container(self, pod: dict) -> None:
        server = self._containers.pop(pod["metadata"]["uid"], None)
        if server is not None:
            server.stop()

    def terminate(self, namespace: str, name: str, exit_code: int, reason: str = "Error") -> None:
        """The server's process ended with ``exit_code`` (restartPolicy Never: it stays down)."""
        pod = self.model.get("pods", namespace, name)
        stamp = now()
        status = self._container_status(
            pod,
            {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": stamp,
                            "finishedAt": stamp}},
            ready=False,
        )
        self._stop_container(pod)
        pod["status"].update(phase="Succeeded" if exit_code == 0 else "Failed",
                             containerStatuses=[status])
        for condition in pod["status"].get("conditions", []):
            if condition["type"] in ("Ready", "ContainersReady"):
                condition["status"] = "False"
        self.model.update("pods", pod)

    def delete_pod(self, pod: dict, grace_seconds: int) -> dict:
        """Graceful deletion: mark, stop the container, and remove after the grace period."""
        if pod["metadata"].get("deletionTimestamp"):
            return pod
        pod["metadata"]["deletionTimestamp"] = now()
        pod["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
        self.model.update("pods", pod)
        if pod["spec"].get("nodeName"):
            self.event(pod, "Killing", "Stopping container notebook",
                       host=pod["spec"]["nodeName"])
        self._spawn(self._remove_later(pod, min(grace_seconds, 1) * self.step * 2))
        return pod

    async def _remove_later(self, pod: dict, delay: float) -> None:
        await asyncio.sleep(delay)
        self._stop_container(pod)
        self.model.remove("pods", pod)

    # ---- claims ----------------------------------------------------------------------

    async def _bind_claim(self, namespace: str, name: str) -> None:
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


class ContainerAnswer(RequestHandler):
    """What a started notebook server answers; enough for the hub to see it is up."""

    def get(self, *args):
        self.set_header("Content-Type", "application/json")
        self.finish('{"started": true}')
