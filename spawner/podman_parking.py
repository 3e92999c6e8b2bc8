"""Parked pods on podman (``parked_pods``): the podman backend's part, and the commands.

Thin I/O; the choices are ``parked_pods``'s. ``ParkedPodStarts`` is mixed into
``PodmanSpawner``: a start uses the pod parked for its launch, a stop parks one. A
restarted hub finds its parked pods by their labels: the next start of their user uses
or removes the pod under the user's pod name, and every park sweeps the hub's parked pods
whose waiter has exited (past its deadline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from pathlib import Path

import yaml

from .launch_spec import LaunchSpec
from .parked_handover import (
    HandoverError,
    clear_handover,
    handover_folder,
    make_handover_folder,
    remove_handover_folder,
    write_handover,
)
from .parked_pods import (
    PARKED_LAUNCH,
    PARKED_MESSAGE,
    PARKED_PORT,
    FoundPod,
    found_pod,
    handover_document,
    launch_key,
    parked_manifest,
    sweepable,
    unusable_reason,
    waiter_command,
    with_launch_label,
)
from .pod_manifest import pod_env
from .podman_cli import PodmanError, free_loopback_port, run_podman
from .podman_plan import (
    POD_NETWORK,
    RUNNING,
    PodmanNames,
    hub_tag,
    pod_reachable_env,
    pod_state,
    podman_names,
)
from .podman_pull import tls_arguments

log = logging.getLogger(__name__)
PARKED_ANSWER_SECONDS = 30
"""How long a parked pod's server may take to answer once handed its start; after that
the pod is removed and a fresh one played."""
SWEEP_GRACE_SECONDS = 5


async def image_id(image: str) -> str:
    """The ID of ``image`` in podman's storage ('' if podman cannot say)."""
    found = await run_podman("image", "inspect", "--format", "{{.Id}}", image, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


async def inspect_pod(pod: str) -> FoundPod | None:
    """The pod named ``pod``, or None when there is none."""
    found = await run_podman("pod", "inspect", "--format", "json", pod, check=False)
    if found.returncode != 0:
        return None
    inspected = json.loads(found.stdout)
    return found_pod(inspected[0] if isinstance(inspected, list) else inspected)


async def remove_parked(state_dir: Path, pod: str) -> None:
    """Remove the pod and its hand-over folder."""
    await run_podman("pod", "rm", "--force", "--ignore", "--time", "0", pod, check=False)
    await asyncio.to_thread(remove_handover_folder, state_dir, pod)


async def sweep_parked(state_dir: Path, tag: str) -> list[str]:
    """Remove this hub's parked pods whose waiter has exited; their names."""
    listed = await run_podman(
        "pod", "ps", "--filter", f"label=kioskhub/hub={tag}",
        "--filter", f"label={PARKED_LAUNCH}", "--format", "json", check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        log.warning("Could not list parked pods: %s", listed.stderr.strip())
        return []
    gone = sweepable(json.loads(listed.stdout or "[]"))
    for pod in gone:
        await remove_parked(state_dir, pod)
    return gone


class ParkedPodStarts:
    """The parked-pod steps of ``PodmanSpawner`` (which provides the attributes used here)."""

    _served = False
    """Whether the current server answered (only such a server's stop parks a pod)."""

    def _parked_pod(self, spec, names, image: str, until: int, host_port: int, image_ref: str):
        """The parked pod of ``spec`` (pure but for the names): manifest with launch label."""
        folder = str(handover_folder(self.site.hub.state_dir, names.pod))
        pod = self._pod(spec, names, image, host_port, command=waiter_command(until))
        manifest = parked_manifest(pod, folder, until, host_port)
        return with_launch_label(manifest, launch_key(manifest, image_ref))

    async def _use_parked_pod(self, spec: LaunchSpec, names: PodmanNames):
        """Checkpoints of a start in the pod parked for this launch; ``_served`` once its
        server answers. Any other pod under the name is left to the fresh start's removal."""
        found, image_ref = await asyncio.gather(inspect_pod(names.pod), image_id(self.image))
        wanted = self._parked_pod(spec, names, self.image, 0, 0, image_ref)
        key = wanted["metadata"]["labels"][PARKED_LAUNCH]
        reason = unusable_reason(found, key, time.time()) if image_ref else "no image ID"
        if reason is None:
            self.log.info("%s: %s", PARKED_MESSAGE, spec.username)
            self.report(45, PARKED_MESSAGE)
            checkpoint = pod_state(names, int(found.labels[PARKED_PORT]), self.image)["podman"]
            self.readopt(checkpoint)
            yield checkpoint
            reason = await self._hand_over(spec, names)
            if reason is None:
                self.pod_cgroup_dirs = await self._find_cgroup_dirs(names.pod)
                yield {"cgroup_dirs": list(self.pod_cgroup_dirs)}
                self._served = True
                return
        if reason:
            self.log.info("Not using the pod parked for %s: %s", spec.username, reason)
            await remove_parked(self.site.hub.state_dir, names.pod)

    async def _hand_over(self, spec: LaunchSpec, names: PodmanNames) -> str | None:
        """Hand the parked pod this start's environment and arguments; None once its
        server answers, else why it could not be used."""
        folder = handover_folder(self.site.hub.state_dir, names.pod)
        env = pod_env(
            dataclasses.replace(spec, env=pod_reachable_env(spec.env)),
            self.site.pods,
            pod_reachable_env(self.get_env()),
        )
        try:
            document = handover_document(env, tuple(self.get_args()))
            await asyncio.to_thread(write_handover, folder, document)
        except (HandoverError, OSError) as error:
            self.log.error("Could not hand %s its start: %s", names.pod, error)
            return "its hand-over folder could not be written"
        answered = await self._answers_soon(PARKED_ANSWER_SECONDS)
        await asyncio.to_thread(clear_handover, folder)
        return None if answered else "its server did not answer"

    async def _answers_soon(self, seconds: float) -> bool:
        """Whether the server answers within ``seconds`` (False at once if it exited)."""
        deadline = time.monotonic() + seconds
        checked = 0.0
        while time.monotonic() < deadline:
            if await self.answering():
                return True
            if time.monotonic() - checked > 1:
                checked = time.monotonic()
                if (await self._container_status())[0] not in RUNNING:
                    return False
            await asyncio.sleep(0.1)
        return False

    async def _park_after_stop(self) -> None:
        """Park a pod for this user's next start of the same launch, when the server that
        stopped had answered (a failed start parks nothing)."""
        if self.site.pods.park_minutes and self.spec and self.image and self._served:
            self._served = False
            await self._park(self.spec, self.image)

    async def _park(self, spec: LaunchSpec, image: str) -> None:
        state_dir, tag = self.site.hub.state_dir, hub_tag(self.site.hub.state_dir)
        names = podman_names(spec, tag)
        seconds = self.site.pods.park_minutes * 60
        try:
            await asyncio.to_thread(make_handover_folder, state_dir, names.pod)
            image_ref = await image_id(image)
            if not image_ref:
                raise PodmanError(f"podman has no image {image}")
            manifest = self._parked_pod(
                spec, names, image, int(time.time() + seconds), free_loopback_port(), image_ref
            )
            await run_podman(
                "kube", "play", "--network", POD_NETWORK,
                *tls_arguments(image, self.site.pull_insecure_registries()),
                "-", stdin=yaml.safe_dump(manifest).encode(),
            )  # fmt: skip
        except (PodmanError, HandoverError, OSError) as error:
            self.log.warning("Could not park a pod for %s: %s", spec.username, error)
            await remove_parked(state_dir, names.pod)
            return
        self.log.info("Parked pod %s for %s for %d min", names.pod, spec.username, seconds // 60)
        asyncio.get_running_loop().call_later(
            seconds + SWEEP_GRACE_SECONDS, self._sweep_soon, state_dir, tag
        )
        await sweep_parked(state_dir, tag)

    def _sweep_soon(self, state_dir, tag: str) -> None:
        self._sweeping = asyncio.ensure_future(sweep_parked(state_dir, tag))
