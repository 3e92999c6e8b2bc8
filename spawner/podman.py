"""PodmanSpawner: each user's server as a container pod on this machine, run by podman.

It runs the very Pod manifest that a Kubernetes cluster would get (``pod_manifest``), with
``podman kube play``: memory and CPU limits, read-only data mounts, the non-root account
and the home claim all come from the manifest. An image podman does not hold is pulled
first (``podman_pull``), with its progress in the spawn progress. The home folder (a host
folder bound into the pod) is prepared on the host as the pods' account, with the
environment's repository files pulled into it (``home``), and the server opens there.
The server's port is
published on the host's loopback only; the pod reaches the hub's API and the Dask Gateway
through slirp4netns' address of the host's loopback (``podman_plan``). Every podman
command uses the project's ``containers.conf`` (``podman_cli``). The pod's name and port
are kept in the spawner state (versioned), so a restarted hub re-adopts a running pod;
so are the pod's cgroup folders, as podman reports them, for its usage record.
With ``pods.park_minutes``, a stopped server's pod is made again, parked for its user's
next start of the same launch (``parked_pods``).
The steps of a start are ``SpawnBackend``'s (base.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import yaml
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Any, Integer, Unicode, default

from kioskhub.hub.schema.builder import environment_gids

from .base import LOG_TAIL_LINES, SpawnBackend
from .cgroup_layout import current_usage_dirs
from .home import files_group, prepare_home
from .launch_spec import ChoiceError, LaunchSpec
from .pod_image import BaseImageRecipe
from .pod_manifest import SERVER_PORT, PodTarget, build_home_claim, build_pod, environment_image
from .podman_cli import PodmanError, free_loopback_port, run_podman
from .podman_parking import ParkedPodStarts
from .podman_plan import (
    POD_NETWORK,
    RUNNING,
    PodmanNames,
    bound_claim,
    hub_labels,
    hub_tag,
    names_from_state,
    own_home_volume_args,
    pod_reachable_env,
    pod_state,
    podman_names,
)
from .podman_pull import ImageUnavailable, ensure_image, tls_arguments
from .readiness import answers_http
from .spawn_form import format_bytes

STOP_GRACE_SECONDS = 5
POD_KINDS = frozenset({"image", "own"})
"""What a pod runs: image environments, and KioskHub's own in the site image."""


class PodmanSpawner(ParkedPodStarts, SpawnBackend, Spawner):
    """Start each user's JupyterLab as a podman pod from the shared Pod manifest."""

    runnable_kinds = POD_KINDS
    backend_name = "podman"
    state_version = 2
    start_poll_interval = 2.0
    """Each poll is a ``podman container inspect`` (a process of its own, ~0.1 CPU-seconds):
    asked at every probe, five starting pods spent the CPUs their servers needed to start."""

    pod_name = Unicode("", help="Name of the running pod (kept in the state).")
    host_port = Integer(0, help="Loopback port the server is published on.")
    image = Unicode("", help="Image the running pod was started from.")
    names = Any(None, allow_none=True, help="PodmanNames of the running pod.")
    pod_cgroup_dirs = Any((), help="The running pod's cgroup folders (CPU time, memory).")
    base_image = Unicode(
        help="The site base image, for KioskHub's own environment when pods.image is empty."
    ).tag(config=True)

    @default("base_image")
    def _default_base_image(self):
        return BaseImageRecipe().image_ref

    @default("env_keep")
    def _default_env_keep(self):
        return []  # the hub's PATH and VIRTUAL_ENV mean nothing inside the image

    # ---- the steps of a start -------------------------------------------------

    async def prepare(self, spec: LaunchSpec, gpu_devices: str | None) -> None:
        pods = self.site.pods
        try:
            image = environment_image(spec, pods, self.base_image)
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None
        self.report(10, f"Environment {spec.environment.name} ({image}), profile {spec.profile}")
        try:
            pulled = await ensure_image(
                image, self.site.pull_insecure_registries(), lambda text: self.report(15, text)
            )
        except ImageUnavailable as error:
            raise web.HTTPError(500, "%s", str(error)) from None
        if pulled:
            self.report(20, f"Pulled {image}")
        self.report(25, "Preparing your home folder")
        # The repository's files of a private environment are closed to its group: the home
        # preparation (a host process as the pods' account) gets it, the pod never does.
        groups = await asyncio.to_thread(
            files_group, spec.repository_files, environment_gids(self.site.builder)
        )
        owner = (spec.identity.uid, spec.identity.gid) if spec.identity else (pods.uid, pods.gid)
        copied = await prepare_home(spec, owner, groups=groups)
        self._home_owner = owner
        if copied:
            self.log.info("Copied examples %s into %s", ", ".join(copied), spec.home)
        self.image = image
        self.default_url = spec.default_url

    def _pod(self, spec: LaunchSpec, names: PodmanNames, image: str, host_port: int, **run):
        """The Pod manifest of ``spec`` on this host; ``run``: the command and server_env."""
        return build_pod(
            dataclasses.replace(spec, env=pod_reachable_env(spec.env)),
            self.site.pods,
            PodTarget(
                pod_name=names.pod,
                home_claim=names.home_claim,
                image=image,
                labels=hub_labels(names),
                publish=("127.0.0.1", host_port),
                **run,
            ),
        )

    async def launch(self, spec: LaunchSpec):
        names = podman_names(spec, hub_tag(self.site.hub.state_dir))
        await self._ensure_home_volume(spec, names)
        self.ip, self.port = "0.0.0.0", SERVER_PORT
        self._served = False
        if self.site.pods.park_minutes:
            async for checkpoint in self._use_parked_pod(spec, names):
                yield checkpoint
            if self._served:
                return
        host_port = free_loopback_port()
        pod = self._pod(
            spec,
            names,
            self.image,
            host_port,
            command=("jupyterhub-singleuser", *self.get_args()),
            server_env=pod_reachable_env(self.get_env()),
        )
        self.report(
            45,
            f"Starting pod {names.pod}: {spec.cpu:g} CPU, {format_bytes(spec.memory_bytes)}",
        )
        checkpoint = pod_state(names, host_port, self.image)["podman"]
        self.readopt(checkpoint)
        yield checkpoint
        await self._podman("pod", "rm", "--force", "--ignore", names.pod)
        await self._podman(
            "kube",
            "play",
            "--network",
            POD_NETWORK,
            *tls_arguments(self.image, self.site.pull_insecure_registries()),
            "-",
            stdin=yaml.safe_dump(pod).encode(),
        )
        self.pod_cgroup_dirs = await self._find_cgroup_dirs(names.pod)
        yield {"cgroup_dirs": list(self.pod_cgroup_dirs)}
        self.report(70, "Waiting for JupyterLab to answer")

    async def _find_cgroup_dirs(self, pod: str) -> tuple[str, ...]:
        """The pod's cgroup folders from podman's own record of the pod (not from anything
        inside it); () if podman cannot say: the record then keeps 0 CPU seconds."""
        found = await run_podman("pod", "inspect", "--format", "{{.CgroupPath}}", pod, check=False)
        try:
            if found.returncode != 0:
                raise ValueError(found.stderr.strip())
            return await asyncio.to_thread(current_usage_dirs, found.stdout.strip())
        except (OSError, ValueError) as error:
            self.log.warning("No cgroup of pod %s for its usage record: %s", pod, error)
            return ()

    def usage_cgroup_dirs(self) -> tuple[str, ...]:
        return self.pod_cgroup_dirs

    def server_address(self):
        return "127.0.0.1", self.host_port

    async def answering(self) -> bool:
        """By HTTP: podman's port forwarder accepts connections before the server does."""
        base_url = self.server.base_url if self.server else "/"
        answered = await answers_http(f"http://127.0.0.1:{self.host_port}{base_url}api")
        self._served = self._served or answered
        return answered

    async def _podman(self, *args: str, stdin: bytes | None = None):
        try:
            return await run_podman(*args, stdin=stdin)
        except PodmanError as error:
            raise web.HTTPError(500, "%s", f"Your server could not be started: {error}") from None

    async def _ensure_home_volume(self, spec: LaunchSpec, names: PodmanNames) -> None:
        """Provision the home claim as a podman volume bound to the user's home folder, and
        mount it once as its owner (``own_home_volume_args``); removed again if that fails."""
        exists = await run_podman("volume", "exists", names.home_claim, check=False)
        if exists.returncode == 0:
            return
        claim = bound_claim(build_home_claim(spec, self.site.pods, names.home_claim), spec.home)
        await self._podman("kube", "play", "-", stdin=yaml.safe_dump(claim).encode())
        try:
            await self._podman(
                *own_home_volume_args(names.home_claim, self._home_owner, self.image)
            )
        except web.HTTPError:
            await run_podman("volume", "rm", "--force", names.home_claim, check=False)
            raise

    async def _container_status(self) -> tuple[str, int]:
        """('running', 0), ('exited', 137), ... or ('missing', 0) for the server's container."""
        if not self.names:
            return "missing", 0
        found = await run_podman(
            "container", "inspect", "--format", "json", self.names.container, check=False
        )
        if found.returncode != 0:
            return "missing", 0
        state = json.loads(found.stdout)[0]["State"]
        return state["Status"], int(state.get("ExitCode", 0))

    async def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.names:
            return "(no log)"
        found = await run_podman("logs", "--tail", str(lines), self.names.container, check=False)
        return (found.stdout + found.stderr).strip() or "(no log)"

    # ---- poll, stop, state --------------------------------------------------------

    async def poll_server(self) -> int | None:
        """None while the server's container runs; its exit code once it stopped; 0 if gone."""
        if not self.names:
            return 0
        status, code = await self._container_status()
        if status in RUNNING:
            return None
        if status == "missing":
            self.clear_state()
            return 0
        return code

    async def stop_server(self, now: bool) -> None:
        await self.usage.update()  # the pod's final CPU time: its cgroup goes with it
        await self._remove_pod(grace=0 if now else STOP_GRACE_SECONDS)
        await self._park_after_stop()

    async def tear_down(self) -> None:
        """A failed start's pod is removed, never parked."""
        self._served = False
        await self.stop_server(True)

    async def _remove_pod(self, grace: int) -> None:
        if not self.names:
            return
        try:
            await run_podman(
                "pod", "rm", "--force", "--ignore", "--time", str(grace), self.names.pod
            )
        except PodmanError as error:
            self.log.warning("Could not remove pod %s: %s", self.names.pod, error)

    def readopt(self, launch_state) -> None:
        found = names_from_state({"podman": launch_state})
        if found:
            self.names, self.host_port, self.image = found
            self.pod_name = self.names.pod
            self.pod_cgroup_dirs = tuple(launch_state.get("cgroup_dirs", ()))

    def upgrade_state(self, state):
        """Version 1 kept ``pod_state`` at the top of the state."""
        return {"launch": state["podman"]} if names_from_state(state) else None

    def clear_state(self):
        super().clear_state()
        self.names, self.pod_name, self.host_port, self.image = None, "", 0, ""
        self.pod_cgroup_dirs = ()
