"""What happens to objects after the API server stored them: scheduler, kubelet, provisioner.

- A pod is scheduled onto a node that fits it (``scheduling``), else it stays Pending with a
  ``FailedScheduling`` event that says why, as kube-scheduler words it. A pod whose claim
  does not exist or is not bound yet waits.
- The kubelet runs the pod for real with podman (``podman_runtime``): it pulls the image as
  the pull policy says (a failed pull is ``ErrImagePull``, then ``ImagePullBackOff`` and a
  retry after a back-off, with podman's own message), plays the pod (``node_pod``) on its
  pod address, and reports what podman reports: phase, podIP, container states with their
  start and finish times, restarts and exit codes, watched until the containers end. A
  volume this node cannot mount (NFS, CSI) is a ``FailedMount`` event; the pod stays
  Pending.
- A deleted pod gets its ``deletionTimestamp`` and a ``Killing`` event; podman stops it
  (SIGTERM, SIGKILL after the grace period) and removes it, then it disappears.
- A claim is bound by the provisioner of its StorageClass (``provisioner``), which makes its
  podman volume, or stays Pending when the class does not exist. Deleting the claim deletes
  the volume.

The scheduler's and provisioner's steps take ``step`` seconds, so tests see every phase in
watch events.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import uuid

from kioskhub.spawner.podman_cli import PodmanError

from .events import record_event
from .model import ClusterModel, now
from .node_pod import node_pod, sandbox_name, unmountable_volumes
from .pod_status import container_status, pull_policy, waiting_status
from .podman_runtime import ContainerState, PodmanRuntime
from .provisioner import Provisioner
from .scheduling import DEFAULT_NODES, SimNode, gpus_of, place, qos_class

__all__ = ["DEFAULT_NODES", "Kubelet", "SimNode", "qos_class"]

MAX_PULL_BACKOFF = 300.0
LOG = logging.getLogger("kube_sim")


def port_free(address: str, ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


class Kubelet:
    """The control loops of the simulated cluster, driven by the model's create hooks."""

    def __init__(self, model: ClusterModel, nodes=DEFAULT_NODES, step: float = 0.05,
                 storage_classes=("standard",), cluster: str = "", insecure_registries=(),
                 pull_backoff: float = 2.0, monitor_interval: float = 0.5):
        self.model = model
        self.nodes = list(nodes)
        self.step = step
        self.cluster = cluster or f"c{uuid.uuid4().hex[:8]}"
        self.runtime = PodmanRuntime(self.cluster, insecure_registries)
        self.provisioner = Provisioner(model, self.runtime, step, storage_classes)
        self.pull_backoff = pull_backoff
        self.monitor_interval = monitor_interval
        self._tasks: set[asyncio.Task] = set()
        self._sandboxes: dict[str, tuple[str, str]] = {}
        """Pod uid → (podman pod, pod address) of each pod podman runs."""
        model.on_created.append(self._created)
        model.on_deleted.append(self._deleted)

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        """Forget the task; a control loop that broke is logged (the pod stays as it was)."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            LOG.error("a control loop of the simulated cluster failed",
                      exc_info=task.exception())

    def _created(self, plural: str, obj: dict) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if plural == "pods":
            self._spawn(self._run_pod(*key))
        elif plural == "persistentvolumeclaims":
            self._spawn(self.provisioner.bind_claim(*key))

    def _deleted(self, plural: str, obj: dict) -> None:
        if plural == "persistentvolumeclaims":
            self._spawn(self.provisioner.remove_volume(obj))

    def event(self, obj: dict, reason: str, message: str, *, type_: str = "Normal",
              component: str = "kubelet", host: str | None = None) -> dict:
        return record_event(self.model, obj, reason, message, type_=type_,
                            component=component, host=host)

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
        if node is None or (pod := self._live_pod(namespace, name, uid)) is None:
            return
        if unmountable := unmountable_volumes(pod):
            for volume, kind in unmountable:
                self.event(pod, "FailedMount",
                           f'MountVolume.SetUp failed for volume "{volume}" : this node '
                           f"mounts hostPath, persistentVolumeClaim and emptyDir volumes, "
                           f"not {kind}", type_="Warning", host=node.name)
            return
        if not await self._pull(namespace, name, uid, node):
            return
        if (pod := self._live_pod(namespace, name, uid)) is None:
            return
        address = self._pod_address(node, pod)
        sandbox = sandbox_name(self.cluster, namespace, name)
        self._sandboxes[uid] = (sandbox, address)
        try:
            await self.runtime.play(node_pod(pod, self.cluster, address),
                                    pod["spec"]["containers"][0]["image"])
        except PodmanError as error:
            if (pod := self._live_pod(namespace, name, uid)) is not None:
                self.event(pod, "Failed", f"Error: {error}", type_="Warning", host=node.name)
                pod["status"]["containerStatuses"] = [
                    waiting_status(c, "CreateContainerError", str(error))
                    for c in pod["spec"]["containers"]
                ]
                self.model.update("pods", pod)
            return
        if (pod := self._live_pod(namespace, name, uid)) is None:
            await self.runtime.remove_pod(sandbox, 0)  # deleted while it started
            return
        for container in pod["spec"]["containers"]:
            self.event(pod, "Created", f"Created container {container['name']}", host=node.name)
            self.event(pod, "Started", f"Started container {container['name']}", host=node.name)
        states = await self._inspect(sandbox, pod)
        if (pod := self._live_pod(namespace, name, uid)) is None:
            return
        self._running(pod, node, address, states)
        await self._watch_containers(namespace, name, uid, sandbox, states)

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
        node, reason = place(pod, self.nodes, self._gpus_used)
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

    # ---- images ------------------------------------------------------------------------

    async def _pull(self, namespace: str, name: str, uid: str, node: SimNode) -> bool:
        """Make the image present as its pull policy says; False once the pod is gone or
        can never run (ErrImageNeverPull). A failed pull backs off and tries again."""
        pod = self._live_pod(namespace, name, uid)
        container = pod["spec"]["containers"][0]
        image, policy = container["image"], pull_policy(container)
        present = await self.runtime.has_image(image)
        if (pod := self._live_pod(namespace, name, uid)) is None:
            return False
        if policy == "Never" and not present:
            message = f'Container image "{image}" is not present with pull policy of Never'
            self._waiting(pod, node, "ErrImageNeverPull", message, message)
            return False
        if present and policy != "Always":
            self.event(pod, "Pulled", f'Container image "{image}" already present on machine',
                       host=node.name)
            return True
        backoff = self.pull_backoff
        while True:
            self.event(pod, "Pulling", f'Pulling image "{image}"', host=node.name)
            try:
                seconds = await self.runtime.pull(image)
            except PodmanError as error:
                if (pod := self._live_pod(namespace, name, uid)) is None:
                    return False
                self._waiting(pod, node, "ErrImagePull", str(error),
                              f'Failed to pull image "{image}": {error}')
                await asyncio.sleep(self.step)
                if (pod := self._live_pod(namespace, name, uid)) is None:
                    return False
                self.event(pod, "BackOff", f'Back-off pulling image "{image}"', host=node.name)
                self._waiting(pod, node, "ImagePullBackOff", f'Back-off pulling image "{image}"')
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_PULL_BACKOFF)
                if (pod := self._live_pod(namespace, name, uid)) is None:
                    return False
                continue
            if (pod := self._live_pod(namespace, name, uid)) is None:
                return False
            self.event(pod, "Pulled", f'Successfully pulled image "{image}" in {seconds:.3f}s '
                       f"({seconds:.3f}s including waiting)", host=node.name)
            return True

    def _waiting(self, pod: dict, node: SimNode, reason: str, message: str,
                 failure: str | None = None) -> None:
        """The container waits for ``reason``; ``failure``: the Failed event's text first."""
        if failure:
            self.event(pod, "Failed", failure, type_="Warning", host=node.name)
        self.event(pod, "Failed", f"Error: {reason}", type_="Warning", host=node.name)
        pod["status"]["containerStatuses"] = [
            waiting_status(c, reason, message) for c in pod["spec"]["containers"]
        ]
        self.model.update("pods", pod)

    # ---- running containers --------------------------------------------------------------

    def _pod_address(self, node: SimNode, pod: dict) -> str:
        """A free address of the node's pod range (free of this and other simulations)."""
        ports = [p["containerPort"] for c in pod["spec"]["containers"]
                 for p in c.get("ports") or []]
        taken = {address for _, address in self._sandboxes.values()}
        index = self.nodes.index(node)
        for host in random.sample(range(2, 255), 253):
            address = f"127.244.{index}.{host}"
            if address not in taken and port_free(address, ports):
                return address
        raise RuntimeError(f"no free pod address on node {node.name}")

    async def _inspect(self, sandbox: str, pod: dict) -> list[ContainerState]:
        return [await self.runtime.inspect(f"{sandbox}-{c['name']}")
                for c in pod["spec"]["containers"]]

    def _running(self, pod: dict, node: SimNode, address: str,
                 states: list[ContainerState]) -> None:
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
        )
        self._report(pod, states)

    def _report(self, pod: dict, states: list[ContainerState]) -> None:
        """Container statuses, and the phase once every container has ended for good (podman
        restarts the others, as the restartPolicy says, at once: there is no back-off)."""
        pod["status"]["containerStatuses"] = [
            container_status(c, s) for c, s in zip(pod["spec"]["containers"], states, strict=True)
        ]
        ended = all(s.status in ("exited", "stopped", "missing") for s in states)
        ready = all(s.status == "running" for s in states)
        failed = any(s.exit_code != 0 or s.status == "missing" for s in states)
        policy = pod["spec"].get("restartPolicy", "Always")
        if ended and (policy == "Never" or policy == "OnFailure" and not failed):
            pod["status"]["phase"] = "Failed" if failed else "Succeeded"
        for condition in pod["status"].get("conditions", []):
            if condition["type"] in ("Ready", "ContainersReady"):
                condition["status"] = "True" if ready else "False"
        self.model.update("pods", pod)

    async def _watch_containers(self, namespace: str, name: str, uid: str, sandbox: str,
                                states: list[ContainerState]) -> None:
        """Report each change podman sees (a restart, an exit) until the containers end."""
        seen = [(s.status, s.exit_code, s.restarts) for s in states]
        while True:
            await asyncio.sleep(self.monitor_interval)
            if (pod := self._live_pod(namespace, name, uid)) is None:
                return
            states = await self._inspect(sandbox, pod)
            if (pod := self._live_pod(namespace, name, uid)) is None:
                return
            now_seen = [(s.status, s.exit_code, s.restarts) for s in states]
            if now_seen != seen:
                seen = now_seen
                self._report(pod, states)
            if pod["status"]["phase"] in ("Succeeded", "Failed"):
                return

    async def kill(self, namespace: str, name: str) -> None:
        """SIGKILL the pod's first container, as the kernel's OOM killer would (exit 137)."""
        pod = self.model.get("pods", namespace, name)
        sandbox, _ = self._sandboxes[pod["metadata"]["uid"]]
        await self.runtime.kill(f"{sandbox}-{pod['spec']['containers'][0]['name']}")

    def delete_pod(self, pod: dict, grace_seconds: int) -> dict:
        """Graceful deletion: mark, stop and remove the containers, then the pod."""
        if pod["metadata"].get("deletionTimestamp"):
            return pod
        pod["metadata"]["deletionTimestamp"] = now()
        pod["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
        self.model.update("pods", pod)
        if pod["spec"].get("nodeName"):
            for container in pod["spec"]["containers"]:
                self.event(pod, "Killing", f"Stopping container {container['name']}",
                           host=pod["spec"]["nodeName"])
        self._spawn(self._remove(pod, grace_seconds))
        return pod

    async def _remove(self, pod: dict, grace_seconds: int) -> None:
        await asyncio.sleep(self.step)
        found = self._sandboxes.pop(pod["metadata"]["uid"], None)
        if found is not None:
            await self.runtime.remove_pod(found[0], min(grace_seconds, 30))
        self.model.remove("pods", pod)

    def shutdown(self) -> None:
        """Remove every pod and volume of this cluster from podman (blocking)."""
        for task in list(self._tasks):
            task.cancel()
        self.runtime.remove_everything()
