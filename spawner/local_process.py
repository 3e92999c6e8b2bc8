"""KioskSpawner's local backend: user servers as processes on the hub's machine.

Builds on JupyterHub's LocalProcessSpawner, which starts, polls, signals and
re-adopts the process. This class turns the user's choice into a LaunchSpec,
then into a LocalLaunch plan, and supplies the account, home, limits and GPUs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Any, Instance, Unicode, default

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.spawn_catalog import open_reader, site_for_user

from . import gpu_assignments, gpus, server_log
from .dask_clusters import stop_user_clusters
from .home import prepare_home
from .launch_spec import ChoiceError, LaunchSpec, allowed, build_launch_spec
from .local_accounts import closed_ancestor, ensure_account
from .local_limits import limit_server, limits_state, reattach_limits
from .local_plan import LocalLaunch, local_launch
from .spawn_feedback import ChoiceSummary, SpawnFeedback
from .spawn_form import format_bytes, options_from_form, render_spawn_form

STATE_VERSION = 1
LOG_TAIL_LINES = 20


class KioskSpawner(ChoiceSummary, SpawnFeedback, LocalProcessSpawner):
    """Start each user's JupyterLab as a local ``jupyterhub-singleuser`` process.

    As root, each hub user runs as a system account of their own, in a private mount
    namespace (read-only data mounts) and a cgroup (memory and CPU limits). Otherwise
    every server runs as the hub's own account, without isolation.
    """

    site = Instance(Site, config=True, help="The validated site config (set by KioskHub).")
    log_path = Unicode("", help="This server's log file (stdout and stderr).")
    limits = Any(None, allow_none=True, help="The cgroup limits of the running server.")
    gpu_uuids = Unicode("", help="GPUs assigned to the running server, comma-separated.")
    pid_started = Any(0.0, help="Start time of the server process, to detect pid reuse.")

    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    # ---- the choice ---------------------------------------------------------

    @property
    def isolated(self) -> bool:
        """Whether servers run as per-user system accounts (the hub is root)."""
        mode = self.site.spawner.isolation
        return mode == "system-users" or (mode == "auto" and os.geteuid() == 0)

    @property
    def isolation_warning(self) -> str:
        if self.isolated:
            return ""
        return (
            "This hub does not run as root, so every server runs as the same account: "
            "users are not isolated from each other's files and processes."
        )

    def _groups(self) -> list[str]:
        return [group.name for group in self.user.groups]

    def user_site(self) -> Site:
        """The site as this user sees it, with their environments from the build catalog."""
        if not hasattr(self, "_catalog"):
            self._catalog = open_reader(self.site)
        return site_for_user(self.site, self.user.name, self._groups(), self._catalog)

    def launch_spec(self, options=None) -> LaunchSpec:
        return build_launch_spec(
            self.user_site(),
            self.user.name,
            self._groups(),
            self.user_options if options is None else options,
            server_name=self.name,
            gpus_available=shutil.which("nvidia-smi") is not None,
        )

    def _render_options_form(self, spawner) -> str:
        groups = self._groups()
        return render_spawn_form(
            allowed(self.user_site().environments, groups),
            allowed(self.site.profiles, groups),
            self.user_options or {},
        )

    def options_from_form(self, formdata):
        options = options_from_form(formdata)
        self._check_choice(options)
        return options

    def options_from_query(self, query):
        return self.options_from_form(query)

    def _check_choice(self, options) -> LaunchSpec:
        try:
            return self.launch_spec(options)
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None

    # ---- start --------------------------------------------------------------

    async def start(self):
        self._progress_events = []
        spec = self._check_choice(self.user_options)
        self.report(10, f"Environment {spec.environment.name}, profile {spec.profile}")
        if self.isolated and os.geteuid() != 0:
            raise web.HTTPError(
                500, "spawner.isolation is system-users, but the hub does not run as root."
            )
        if self.isolated:
            self.report(20, "Preparing your system account")
        account = await ensure_account(self.site, spec) if self.isolated else None
        gpu_devices = await self._assign_gpus(spec)
        try:
            plan = local_launch(
                spec, own_prefix=Path(sys.prefix), account=account, gpu_devices=gpu_devices
            )
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None
        self.report(35, "Preparing your home folder")
        copied = await prepare_home(
            spec,
            (account.uid, account.gid) if account else None,
            mount_points=plan.home_mount_points,
            links=plan.home_links,
        )
        self._check_environment(plan)
        if copied:
            self.log.info("Copied examples %s into %s", ", ".join(copied), spec.home)
        if account:
            self.report(
                50, f"Limiting the server to {spec.cpu:g} CPU and {format_bytes(spec.memory_bytes)}"
            )
            self.limits = limit_server(self._cgroup_name, spec)
            plan = replace(plan, cgroup_procs=self.limits.procs_files if self.limits else ())
            self.cmd = plan.launcher_argv()
        else:
            self.cmd = plan.command
        self._plan = plan
        self.notebook_dir = str(plan.home)
        self.default_url = spec.default_url
        self.report(65, "Starting JupyterLab")
        log = self._open_log()
        self.popen_kwargs = {"stdout": log, "stderr": subprocess.STDOUT, "cwd": "/"}
        try:
            ip, port = await super().start()
        finally:
            log.close()
        self.pid_started = psutil.Process(self.pid).create_time()
        self.report(80, "Waiting for the server to answer")
        await self._wait_listening(ip, port)
        return ip, port

    @property
    def _cgroup_name(self) -> str:
        """Unique per hub too: two hubs on one machine may both have a user 'ada'."""
        hub_tag = hashlib.sha256(str(self.site.hub.state_dir).encode()).hexdigest()[:8]
        return f"{self._server_id}.{hub_tag}"

    @property
    def _server_id(self) -> str:
        return f"{self.user.name}-{self.name}" if self.name else self.user.name

    def _check_environment(self, plan: LocalLaunch) -> None:
        server = Path(plan.command[0])
        environment = plan.env["KIOSKHUB_ENVIRONMENT"]
        if not server.exists():
            raise web.HTTPError(
                500,
                "%s",
                f"The environment {environment!r} is missing {server}: install jupyterhub "
                f"and jupyterlab into {plan.env['VIRTUAL_ENV']}, or ask the site's admins to "
                "fix the environment.",
            )
        if plan.account:
            python = (Path(plan.env["VIRTUAL_ENV"]) / "bin" / "python").resolve()
            for needed in (server, python, plan.home / "."):
                closed = closed_ancestor(needed)
                if closed is not None:
                    raise web.HTTPError(
                        500,
                        "%s",
                        f"{needed} is out of reach of the user accounts: the folder {closed} "
                        "is closed to other accounts. Run KioskHub from a folder that other "
                        f"accounts may enter, or allow it with `chmod o+x {closed}`.",
                    )

    def _open_log(self):
        self.log_path = str(self.site.hub.state_dir / "logs" / f"{self._server_id}.log")
        return server_log.open_capped_log(Path(self.log_path))

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return server_log.tail(Path(self.log_path), lines)

    async def _wait_listening(self, ip: str, port: int) -> None:
        """Return once the server accepts connections; explain with its log if it cannot."""
        deadline = time.monotonic() + max(self.start_timeout - 3, 2)
        while time.monotonic() < deadline:
            status = self.proc.poll()
            if status is not None:
                await self._release()
                raise web.HTTPError(
                    500,
                    "%s",
                    f"Your server exited during start (exit status {status}). "
                    f"Its last log lines:\n{self.log_tail()}",
                )
            try:
                with socket.create_connection((ip, port), timeout=1):
                    return
            except OSError:
                await asyncio.sleep(0.2)
        raise web.HTTPError(
            500,
            "%s",
            f"Your server did not start within {self.start_timeout} seconds. "
            f"Its last log lines:\n{self.log_tail()}",
        )

    # ---- GPUs ---------------------------------------------------------------

    async def _assign_gpus(self, spec: LaunchSpec) -> str | None:
        if not spec.gpu_count:
            return None
        try:
            found, busy = await gpus.discover_gpus()
            taken = gpu_assignments.assigned_elsewhere(self.site.hub.state_dir, self._server_id)
            chosen = gpus.choose_gpus(found, busy, taken, spec.gpu_count, spec.gpu_type)
        except (gpus.NoFreeGpu, gpus.GpuDiscoveryError) as error:
            raise web.HTTPError(503, "%s", str(error)) from None
        gpu_assignments.record_assignment(self.site.hub.state_dir, self._server_id, chosen)
        self.gpu_uuids = ",".join(g.uuid for g in chosen)
        return gpus.cuda_visible_devices(chosen)

    # ---- environment, state, poll, stop --------------------------------------

    def get_env(self):
        env = super().get_env()
        env.update(self._plan.env)
        return env

    def user_env(self, env):
        return env

    def get_args(self):
        args = super().get_args()
        # Explains memory-limit kills in the cell's output; a no-op where the
        # environment lacks KioskHub's extensions package.
        args.append("--ServerApp.jpserver_extensions=extensions.memory_notice=True")
        if os.geteuid() == 0 and not self.isolated:
            args.append("--allow-root")
        return args

    def make_preexec_fn(self, name):
        return None

    async def move_certs(self, paths):
        return paths

    def get_state(self):
        state = super().get_state()
        if self.pid:
            state.update(
                version=STATE_VERSION,
                pid_started=self.pid_started,
                log_path=self.log_path,
                limits=limits_state(self.limits),
                gpus=self.gpu_uuids,
            )
        return state

    def load_state(self, state):
        super().load_state(state)
        if state.get("version") != STATE_VERSION:
            return
        self.pid_started = state.get("pid_started", 0.0)
        self.log_path = state.get("log_path", "")
        self.gpu_uuids = state.get("gpus", "")
        self.limits = reattach_limits(state.get("limits"))

    def clear_state(self):
        super().clear_state()
        self.pid_started = 0.0

    async def poll(self):
        if self.proc is None and self.pid and self.pid_started:
            try:
                if psutil.Process(self.pid).create_time() != self.pid_started:
                    self.clear_state()
                    return 0
            except psutil.NoSuchProcess:
                self.clear_state()
                return 0
        status = await super().poll()
        if status is not None:
            await self._release()
        return status

    async def stop(self, now=False):
        await stop_user_clusters(self.site, self.api_token, self._log_name)
        await super().stop(now=now)
        await self._release()

    async def _release(self) -> None:
        """Give back the cgroup and GPUs of a server that is gone."""
        if self.limits is not None:
            killed = self.limits.remove()
            if killed:
                self.log.warning("Killed %d leftover processes of %s", killed, self._log_name)
            self.limits = None
        if self.gpu_uuids:
            gpu_assignments.release_assignment(self.site.hub.state_dir, self._server_id)
            self.gpu_uuids = ""
