"""OpenStackSpawner: each user's server in a virtual machine of its own, on an OpenStack cloud.

The profile's flavor and the environment's image come from the site's ``openstack:`` section
(``openstack_plan.vm_plan``). ``prepare`` finds them in the cloud, keeps the servers' security
group (one ingress rule: the hub and proxy to the server's port) and the user's Cinder home
volume (made on the first start, kept across VMs). ``launch`` asks Nova for the server with the
volume attached and the cloud-init user-data of ``openstack_cloud_init`` (which writes the
server's environment, mounts the home and starts jupyterhub-singleuser that connects back to
the hub at ``openstack.hub_address``), and follows it from BUILD to ACTIVE. The server id,
volume id and address are the versioned state, so a restarted hub re-adopts running VMs; stop
deletes the VM and keeps the volume. The cloud's refusals reach the spawn page with its
reason: a quota, no valid host, an image not found, a VM stuck in BUILD past
``boot_timeout`` (deleted then), or a server that failed in the VM (the console's last lines).
Every openstacksdk call runs in a thread (``openstack_cloud``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Any as AnyTrait
from traitlets import Unicode, default

from kioskhub.hub.schema.openstack import admitted_cidr

from . import openstack_cloud as cloud
from .base import LOG_TAIL_LINES, SpawnBackend
from .launch_spec import ChoiceError, LaunchSpec
from .openstack_cloud_init import UserDataError, VmServer, render_user_data
from .openstack_plan import (
    VmNames,
    cloud_refusal,
    console_failure,
    fault_message,
    last_lines,
    port_rule,
    server_address,
    server_request,
    vm_names,
    vm_plan,
    vm_reachable_env,
)
from .podman_plan import hub_tag
from .readiness import answers_http

T = TypeVar("T")
VM_KINDS = frozenset({"image", "own"})
"""What a VM runs: an environment's container image (or a Glance image that has it), and
KioskHub's own environment in the site image."""
POLL_SECONDS = 1.0
CONSOLE_CHECK_SECONDS = 5.0
START_MARGIN_SECONDS = 60
"""JupyterHub's start_timeout beyond boot_timeout: finding the image, volume and group."""


class OpenStackSpawner(SpawnBackend, Spawner):
    """Start each user's JupyterLab in an OpenStack VM, booted with cloud-init."""

    runnable_kinds = VM_KINDS
    backend_name = "openstack"
    state_version = 1

    server_id = Unicode("", help="The Nova server of the running VM (kept in the state).")
    volume_id = Unicode("", help="The user's Cinder home volume (kept in the state).")
    address = Unicode("", help="The VM's address on the servers' network.")
    flavor = Unicode("", help="The running VM's flavor.")
    connection = AnyTrait(None, allow_none=True, help="The openstacksdk connection.")

    @default("env_keep")
    def _default_env_keep(self):
        return []  # the hub's PATH and VIRTUAL_ENV mean nothing inside the VM

    @default("start_timeout")
    def _default_start_timeout(self):
        return self.settings.boot_timeout + START_MARGIN_SECONDS

    @property
    def settings(self):
        return self.site.openstack

    # ---- the cloud, off the event loop ------------------------------------------------

    async def _cloud(self, step: Callable[..., T], *args) -> T:
        """Run one call of ``openstack_cloud`` in a thread, on this spawner's connection."""

        def run():
            if self.connection is None:
                self.connection = cloud.connect(self.settings)
            return step(self.connection, *args)

        return await asyncio.to_thread(run)

    async def _ask(self, what: str, step: Callable[..., T], *args) -> T:
        """``_cloud``, with the cloud's refusal turned into a message for the user."""
        try:
            return await self._cloud(step, *args)
        except cloud.CloudError as error:
            if error.status == 404:
                raise web.HTTPError(500, "%s", f"{error} Ask the site's admins.") from None
            raise web.HTTPError(500, "%s", cloud_refusal(what, error.status, str(error))) from None

    def _names(self, spec: LaunchSpec) -> VmNames:
        return vm_names(spec.username, spec.server_name, hub_tag(self.site.hub.state_dir))

    # ---- the steps of a start ------------------------------------------------------------

    async def prepare(self, spec: LaunchSpec, gpu_devices: str | None) -> None:
        try:
            self._plan = vm_plan(spec, self.settings, self.site.pods.image)
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None
        plan = self._plan
        self.report(10, f"OpenStack: flavor {plan.flavor}, image {plan.image}")
        self._flavor_id = await self._ask("VM", cloud.find_flavor, plan.flavor)
        size = await self._ask("VM", cloud.flavor_size, self._flavor_id)
        await self.usage.resize(size["vcpus"], size["ram"] * 2**20, size["disk"])
        self._image_id = await self._ask("VM", cloud.find_image, plan.image)
        self._network_id = await self._ask("VM", cloud.find_network, self.settings.network)
        self.report(15, f"Security group {self.settings.security_group}")
        await self._ask(
            "security group",
            cloud.ensure_security_group,
            self.settings.security_group,
            port_rule("", self.settings.server_port, admitted_cidr(self.settings)),
        )
        names = self._names(spec)
        self.report(20, f"Your home volume {names.volume}")
        self.volume_id, made = await self._ask(
            "home volume",
            cloud.ensure_home_volume,
            names.volume,
            self.settings.home_volume_size,
            self.settings.home_volume_type,
            {"kioskhub-user": spec.username},
        )
        if made:
            self.report(25, f"Made your home volume ({self.settings.home_volume_size} GB)")
        self.flavor = plan.flavor
        self.default_url = spec.default_url

    def _user_data(self, spec: LaunchSpec) -> str:
        plan = self._plan
        self.ip, self.port = "0.0.0.0", self.settings.server_port
        env = vm_reachable_env(self.get_env(), self.settings.hub_address)
        server = VmServer(
            server_env=env,
            args=tuple(self.get_args()),
            home_volume_id=self.volume_id,
            home_path=self.site.pods.home_path,
            uid=spec.identity.uid if spec.identity else self.site.pods.uid,
            gid=spec.identity.gid if spec.identity else self.site.pods.gid,
            container_image=plan.container_image,
            singleuser=plan.singleuser,
            insecure_registries=self.site.pull_insecure_registries(),
        )
        try:
            return render_user_data(server)
        except UserDataError as error:
            message = f"Your server cannot be described to the VM: {error}"
            raise web.HTTPError(500, "%s", message) from None

    async def launch(self, spec: LaunchSpec):
        names = self._names(spec)
        request = server_request(
            names,
            self._flavor_id,
            self._image_id,
            self._network_id,
            self.settings.security_group,
            self._user_data(spec),
            self.volume_id,
            {"kioskhub-user": spec.username, "kioskhub-hub": hub_tag(self.site.hub.state_dir)},
            self.settings.key_name,
        )
        self.report(30, f"Requesting VM {names.server} ({self._plan.flavor})")
        self._boot_deadline = time.monotonic() + self.settings.boot_timeout
        self.server_id = await self._ask("VM", cloud.create_server, request)
        yield {"server_id": self.server_id, "volume_id": self.volume_id, "flavor": self.flavor}
        self.address = await self._wait_active()
        yield {"address": self.address}
        self.report(60, f"VM {names.server} is up at {self.address}; cloud-init starts your server")

    async def _wait_active(self) -> str:
        """Follow the server from BUILD to ACTIVE; its address. ERROR: Nova's fault; still
        BUILD after boot_timeout: the start fails (and the tear-down deletes it)."""
        deadline = self._boot_deadline
        while True:
            status = await self._ask("VM", cloud.server_status, self.server_id)
            if status is None:
                raise web.HTTPError(500, "%s", "Your VM was deleted while it was built.")
            if status.status == "ERROR":
                raise web.HTTPError(500, "%s", fault_message(status.fault, self.flavor))
            if status.status == "ACTIVE":
                found = server_address(status.addresses, self.settings.network)
                if found is None:
                    raise web.HTTPError(500, "%s", "Your VM is up but has no address.")
                return found
            if time.monotonic() > deadline:
                raise web.HTTPError(
                    500,
                    "%s",
                    f"Your VM was still being built (status {status.status}) after "
                    f"{self.settings.boot_timeout} s, so it was deleted. The cloud may be "
                    "busy; try again later.",
                )
            await asyncio.sleep(POLL_SECONDS)

    def server_address(self):
        return self.address, self.settings.server_port

    async def answering(self) -> bool:
        base_url = self.server.base_url if self.server else "/"
        port = self.settings.server_port
        return await answers_http(f"http://{self.address}:{port}{base_url}api")

    async def wait_until_answering(self) -> None:
        """Until the server answers, within ``boot_timeout`` of the request (JupyterHub's
        own start_timeout leaves a minute more); every few seconds the console is read for
        a server that failed in the VM, which ends the wait with the console's last lines."""
        next_console_check = 0.0
        while time.monotonic() < self._boot_deadline:
            if time.monotonic() >= next_console_check:
                next_console_check = time.monotonic() + CONSOLE_CHECK_SECONDS
                failed = console_failure(await self._console(LOG_TAIL_LINES))
                if failed:
                    raise web.HTTPError(
                        500,
                        "%s",
                        "Your server failed to start in its VM. The VM console's last "
                        f"lines:\n{failed}",
                    )
            if await self.answering():
                return
            await asyncio.sleep(POLL_SECONDS)
        raise web.HTTPError(
            500,
            "%s",
            f"Your server did not start within {self.settings.boot_timeout} seconds of the "
            f"VM's request. The VM console's last lines:\n{await self.log_tail()}",
        )

    async def _console(self, lines: int) -> str:
        if not self.server_id:
            return ""
        try:
            return await self._cloud(cloud.console_log, self.server_id, lines)
        except cloud.CloudError as error:
            self.log.warning("No console of VM %s: %s", self.server_id, error)
            return ""

    async def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return last_lines(await self._console(lines), lines)

    # ---- poll, stop, state ------------------------------------------------------------

    async def poll_server(self) -> int | None:
        """None while the VM is building or active; 0 once it is gone; 1 if it failed."""
        if not self.server_id:
            return 0
        try:
            status = await self._cloud(cloud.server_status, self.server_id)
        except cloud.CloudError as error:
            self.log.warning("Cannot ask for VM %s: %s", self.server_id, error)
            return None  # the cloud did not answer: the VM may well run
        if status is None:
            self.clear_state()
            return 0
        return None if status.status in ("BUILD", "ACTIVE", "REBOOT", "HARD_REBOOT") else 1

    async def stop_server(self, now: bool) -> None:
        """Delete the VM (and wait until it is gone); the home volume stays."""
        if not self.server_id:
            return
        try:
            await self._cloud(cloud.delete_server, self.server_id)
        except cloud.CloudError as error:
            self.log.error("Could not delete VM %s: %s", self.server_id, error)
            raise
        self.server_id, self.address = "", ""

    def readopt(self, launch_state: dict[str, Any]) -> None:
        self.server_id = launch_state.get("server_id", "")
        self.volume_id = launch_state.get("volume_id", "")
        self.address = launch_state.get("address", "")
        self.flavor = launch_state.get("flavor", "")

    def clear_state(self):
        super().clear_state()
        self.server_id, self.address, self.flavor = "", "", ""


