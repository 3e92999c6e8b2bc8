"""KioskSpawner, the local backend: user servers as processes on the hub's machine.

Builds on JupyterHub's LocalProcessSpawner, which starts, polls, signals and
re-adopts the process; the steps of a start are those of ``SpawnBackend`` (base.py).
This backend turns the LaunchSpec into a LocalLaunch plan and supplies the account,
home, limits and GPUs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import psutil
from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Any, Unicode

from kioskhub.hub.schema.builder import environment_gids

from . import local_files
from .base import LOG_TAIL_LINES, SpawnBackend
from .fork_choice import fork_refusal, served_prefix
from .fork_servers import ChildFailed, ForkServerError
from .launch_spec import ChoiceError, LaunchSpec
from .local_accounts import server_account
from .local_limits import limit_server, limits_state, reattach_limits
from .local_plan import local_launch
from .pod_image import SERVER_EXTENSIONS
from .readiness import accepts_connections
from .spawn_form import format_bytes

PREVIOUS_STATE_KEYS = ("pid_started", "log_path", "limits")
"""The local state of version 1 kept these beside ``pid``, with ``version`` and ``gpus``."""


@functools.cache
def nvidia_smi_found() -> bool:
    return shutil.which("nvidia-smi") is not None


class KioskSpawner(SpawnBackend, LocalProcessSpawner):
    """Start each user's JupyterLab as a local ``jupyterhub-singleuser`` process.

    As root, each hub user runs as a system account of their own, in a private mount
    namespace (read-only data mounts) and a cgroup (memory and CPU limits). Otherwise
    every server runs as the hub's own account, without isolation.
    """

    runnable_kinds = frozenset({"venv", "own"})
    backend_name = "local"
    state_version = 2
    assigns_gpus = True

    log_path = Unicode("", help="This server's log file (stdout and stderr).")
    limits = Any(None, allow_none=True, help="The cgroup limits of the running server.")
    pid_started = Any(0.0, help="Start time of the server process, to detect pid reuse.")
    fork_servers = Any(
        None,
        allow_none=True,
        config=True,
        help="The hub's ForkServers (fork_servers.py), set by KioskHub when "
        "spawner.fork_server is on; None: every server starts as a fresh process.",
    )

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

    def gpus_available(self) -> bool:
        return nvidia_smi_found()

    # ---- the steps of a start -------------------------------------------------

    async def prepare(self, spec: LaunchSpec, gpu_devices: str | None) -> None:
        self.report(10, f"Environment {spec.environment.name}, profile {spec.profile}")
        if self.isolated and os.geteuid() != 0:
            raise web.HTTPError(
                500, "spawner.isolation is system-users, but the hub does not run as root."
            )
        if spec.identity and not self.isolated:
            raise web.HTTPError(
                500,
                "auth.identity runs servers as lab identities, which needs the hub to run as "
                "root with spawner.isolation auto or system-users.",
            )
        if self.isolated:
            self.report(20, "Preparing your system account")
        account = await server_account(self.site, spec) if self.isolated else None
        try:
            plan = local_launch(
                spec, own_prefix=Path(sys.prefix), account=account, gpu_devices=gpu_devices
            )
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None
        if account:
            groups = await local_files.in_thread(
                local_files.environment_groups, plan, environment_gids(self.site.builder)
            )
            plan = replace(plan, extra_groups=groups)
        self.report(35, "Preparing your home folder")
        copied = await local_files.prepare_server_files(spec, plan)
        if copied:
            self.log.info("Copied examples %s into %s", ", ".join(copied), spec.home)
        self._plan = plan
        self.notebook_dir = str(plan.home)
        self.default_url = spec.default_url

    async def launch(self, spec: LaunchSpec):
        plan = self._plan
        if plan.account:
            self.report(
                50, f"Limiting the server to {spec.cpu:g} CPU and {format_bytes(spec.memory_bytes)}"
            )
            self.limits = await local_files.in_thread(limit_server, self._cgroup_name, spec)
            yield {"limits": limits_state(self.limits)}
            plan = replace(plan, cgroup_procs=self.limits.procs_files if self.limits else ())
            self.cmd = plan.launcher_argv()
        else:
            self.cmd = plan.command
        self._plan = plan
        self.report(65, "Starting JupyterLab")
        self.log_path = str(self.site.hub.state_dir / "logs" / f"{self.server_id}.log")
        log = await local_files.in_thread(local_files.open_log, Path(self.log_path))
        self.popen_kwargs = {"stdout": log, "stderr": subprocess.STDOUT, "cwd": "/"}
        try:
            forked = await self._start_forked(spec, plan, log)
            if not forked:
                self._address = await LocalProcessSpawner.start(self)
        finally:
            log.close()
        self.pid_started = psutil.Process(self.pid).create_time()
        yield {"pid_started": self.pid_started, "log_path": self.log_path, "forked": forked}
        self.report(80, "Waiting for the server to answer")

    async def _start_forked(self, spec: LaunchSpec, plan, log) -> bool:
        """Start the server from its environment's fork server; False (and a log line)
        where none may or can serve it, and the caller starts it normally."""
        if self.fork_servers is None:
            return False
        own = Path(sys.prefix)
        why = fork_refusal(self.site, spec, own, as_root=self.isolated)
        if why:
            self.log.info("Starting %s without a fork server: %s", self._log_name, why)
            return False
        if self.port == 0:
            self.port = random_port()
        argv = [*plan.command, *self.get_args()]
        try:
            pid = await self.fork_servers.fork(
                served_prefix(spec, own),
                argv,
                self.get_env(),
                plan.isolation_plan(),
                log.fileno(),
            )
        except ForkServerError as error:
            self.log.warning("Starting %s without a fork server: %s", self._log_name, error)
            return False
        except ChildFailed as failed:
            raise web.HTTPError(
                500,
                "%s",
                f"Your server exited during start (exit status {failed.status}). "
                f"Its last log lines:\n{failed}",
            ) from None
        self.log.info("Forked the server of %s (pid %d)", self._log_name, pid)
        self.proc, self.pid = None, pid
        self._address = (self.ip or "127.0.0.1", self.port)
        return True

    def server_address(self):
        return self._address

    async def answering(self) -> bool:
        return await accepts_connections(*self._address)

    @property
    def _cgroup_name(self) -> str:
        """Unique per hub too: two hubs on one machine may both have a user 'ada'."""
        hub_tag = hashlib.sha256(str(self.site.hub.state_dir).encode()).hexdigest()[:8]
        return f"{self.server_id}.{hub_tag}"

    async def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return await local_files.in_thread(local_files.log_tail, Path(self.log_path), lines)

    # ---- environment of the process ---------------------------------------------

    def get_env(self):
        env = super().get_env()
        env.update(self._plan.env)
        return env

    def user_env(self, env):
        return env

    def get_args(self):
        # A copy: JupyterHub returns its ``args`` trait itself, which each start would grow.
        args = list(super().get_args())
        # memory_notice explains memory-limit kills in the cell's output.
        args += [f"--ServerApp.jpserver_extensions={name}=True" for name in SERVER_EXTENSIONS]
        if os.geteuid() == 0 and not self.isolated:
            args.append("--allow-root")
        return args

    def make_preexec_fn(self, name):
        return None

    async def move_certs(self, paths):
        return paths

    # ---- poll, stop, state --------------------------------------------------------

    async def poll_server(self) -> int | None:
        if self.proc is None and self.pid and self.pid_started:
            try:
                if psutil.Process(self.pid).create_time() != self.pid_started:
                    self.clear_state()
                    return 0
            except psutil.NoSuchProcess:
                self.clear_state()
                return 0
        return await LocalProcessSpawner.poll(self)

    async def stop_server(self, now: bool) -> None:
        await LocalProcessSpawner.stop(self, now=now)

    async def release(self) -> None:
        """Give back the cgroup of a server that is gone (killing what is left in it)."""
        if self.limits is None:
            return
        limits, self.limits = self.limits, None
        killed = await local_files.in_thread(limits.remove)
        if killed:
            self.log.warning("Killed %d leftover processes of %s", killed, self._log_name)

    def usage_cgroup_dirs(self) -> tuple[str, ...]:
        return self.limits.dirs if self.limits else ()

    def readopt(self, launch_state) -> None:
        self.pid_started = launch_state.get("pid_started", 0.0)
        self.log_path = launch_state.get("log_path", "")
        self.limits = reattach_limits(launch_state.get("limits"))

    def upgrade_state(self, state):
        if state.get("version") != 1 or not state.get("pid"):
            return None
        launch = {key: state[key] for key in PREVIOUS_STATE_KEYS if key in state}
        return {"launch": launch, "gpus": state.get("gpus", "")}

    def clear_state(self):
        super().clear_state()
        self.pid_started = 0.0
