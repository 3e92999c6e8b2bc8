"""The contract of a KioskHub spawn backend; this docstring is the whole of it.

``SpawnBackend`` is mixed in before a JupyterHub spawner class (``Spawner``,
``LocalProcessSpawner``, ``KubeSpawner``) and implements JupyterHub's ``start``, ``poll``,
``stop``, ``get_state``, ``load_state`` and the spawn form once, for every backend. A backend
is one module: a class ``(SpawnBackend, <JupyterHub spawner>)`` that implements the steps
below, plus its tests; ``hub/pod_backends.py`` names it for ``spawner.backend``.

One start, as JupyterHub drives it
----------------------------------
1. ``apply_user_options`` (``check_choice``): the user's environments are awaited from
   ``environments_for_user`` (the hub assembly wires the build catalog there, read off the
   event loop), kept to those this backend runs, and the choice becomes a LaunchSpec, or a
   400 whose message says why. This is the only place a choice is checked. The user's lab
   identity (``auth.identity``, ``lab_identity``) is resolved here too, into ``spec.identity``;
   a user without a valid one gets a 400 that says why, before anything is made (and loses
   the record of an earlier identity, ``identity_record``).
2. ``start`` takes that LaunchSpec (built once; it is ``self.spec`` from then on), reserves
   the server's usage record where the quotas are checked (``server_quota``: a refusal is a
   403 that names the quota and starts nothing; a failed start removes the reservation),
   assigns GPUs when ``assigns_gpus`` and the profile asks for them, then runs the
   backend's steps:

   - ``prepare(spec, gpu_devices)``: checks and I/O that start nothing (accounts, home
     folder, image); ``gpu_devices`` is CUDA_VISIBLE_DEVICES of the assigned GPUs, or None.
     After it, a lab identity is recorded (``identity_record``) for the Dask Gateway,
     which runs the user's clusters as that same identity.
   - ``launch(spec)``: an async generator; each dict it yields is a checkpoint merged into
     ``launch_state`` (and the saved state). If anything fails or is cancelled from the
     first step of ``launch`` on, ``tear_down()`` runs before the error reaches the user,
     so a start that fails half way leaves nothing behind; GPUs go back in every case.
   - ``wait_until_answering()``: the one readiness loop (skipped where
     ``waits_for_answer`` is False): until ``answering()``, or ``poll_server()`` says the
     server exited, or ``start_timeout`` passes; errors quote ``log_tail()``.

   ``start`` returns ``server_address()``. Progress: ``report(percent, message)``.

What a backend implements
-------------------------
- ``runnable_kinds``: the ONE statement of which environments it runs, among
  ``"venv"`` (a venv on the hub's machine), ``"own"`` (KioskHub's own environment, also
  the site image) and ``"image"`` (a container image). Unbuilt repositories never run.
  The form shows the others as options that cannot be chosen, with the reason; naming
  one is a 400 that says why (``environment_kinds``, whose ``BACKEND_KINDS`` is the
  table of every backend). ``backend_name`` is the name in those messages.
- ``prepare``, ``launch``, ``server_address``, ``log_tail``, and ``answering()`` (with
  ``readiness.accepts_connections`` or ``readiness.answers_http``).
- ``poll_server()``: ``None`` while the server runs, its exit status once it has stopped,
  0 when none was started. ``poll`` adds JupyterHub's rule that a start in progress is
  running (``None``), and releases GPUs and ``release()`` once the server is gone.
- ``stop_server(now)``; ``tear_down()`` removes what ``launch`` made (default: a stop).
- ``release()``: give back what a gone server held on the hub's machine (default: nothing).
- ``state_version``, ``readopt(launch_state)``: the saved state is
  ``{"kioskhub": {"version", "launch", "gpus", "summary"}}`` beside the JupyterHub class's
  own, written once ``launch`` has yielded a non-empty checkpoint (KubeSpawner keeps its
  own versioned state, so the Kubernetes backend yields none);
  ``readopt`` restores the backend's attributes from it after a hub restart, and
  ``upgrade_state(state)`` turns state written by the backend's previous version into
  ``{"launch": ..., "gpus": ...}`` (or None) so that running servers are re-adopted.
- Optional: ``gpus_available()``, ``assigns_gpus``, ``isolation_warning``.

``stop`` stops the user's Dask clusters (while the server's token is valid), then calls
``stop_server`` and releases GPUs and ``release()``. Nothing here blocks the event loop:
file and database work runs in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC
from html import escape
from typing import Any, ClassVar

from tornado import web
from traitlets import Any as AnyTrait
from traitlets import Callable as CallableTrait
from traitlets import Dict, Instance, Unicode, default
from traitlets.config import LoggingConfigurable

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site

from . import gpu_assignments, gpus, identity_record, metrics, server_quota, usage_recorder
from .dask_clusters import stop_user_clusters
from .environment_kinds import environment_kind, refusal
from .lab_identity import IdentityError, resolve_identity
from .launch_spec import (
    ChoiceError,
    LaunchSpec,
    allowed,
    build_launch_spec,
    normalise_options,
    pick,
)
from .spawn_feedback import SpawnFeedback
from .spawn_form import options_from_form, render_spawn_form

EnvironmentsForUser = Callable[..., Awaitable[tuple[Environment, ...]]]
"""``await environments_for_user(site, username, groups)``: every environment the user may
launch (the site's and the build catalog's), before any backend's filter. A callable whose
``needs_auth_state`` is true is also given ``auth_state=`` (the user's, decrypted), and may
return a tuple with ``notes``: lines the spawn form shows above the choices."""

LOG_TAIL_LINES = 20


class SpawnRefused(web.HTTPError):
    """A start refused before anything started (counted as a refusal, not a failed spawn)."""


async def config_environments(site: Site, username: str, groups: tuple[str, ...]):
    """The environments of the site config alone (no build catalog)."""
    return site.environments


class SpawnBackend(SpawnFeedback, LoggingConfigurable):
    """The part of every KioskHub spawner that does not depend on where servers run."""

    site = Instance(Site, config=True, help="The validated site config (set by KioskHub).")
    environments_for_user = CallableTrait(
        config_environments,
        config=True,
        help="Async callable (site, username, groups) → the environments the user may "
        "launch (with auth_state= too when it has needs_auth_state). KioskHub wires the "
        "build catalog and the user's GitLab images here; default: the site config's.",
    )
    launch_state = Dict(help="Checkpoints of the running server's launch (saved state).")
    gpu_uuids = Unicode("", help="GPUs assigned to the running server, comma-separated.")
    summary = Unicode("", help="'Environment · Profile' of the running server.")
    spec = AnyTrait(None, allow_none=True, help="The LaunchSpec of the current server.")

    runnable_kinds: ClassVar[frozenset[str]] = frozenset()
    backend_name: ClassVar[str] = ""
    state_version: ClassVar[int] = 1
    assigns_gpus: ClassVar[bool] = False
    waits_for_answer: ClassVar[bool] = True
    start_poll_interval: ClassVar[float] = 0.0
    """Seconds between ``poll_server`` calls while a start waits for its server to answer
    (0: at every probe). A backend whose poll runs a process says how often it may."""
    isolation_warning = ""
    checked_environments: tuple[Environment, ...] = ()
    environment_notes: tuple[str, ...] = ()

    @default("options_form")
    def _default_options_form(self):
        return SpawnBackend.render_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return SpawnBackend.check_choice

    def get_env(self):
        """JupyterHub's environment, and when the hub counts this server as started (the
        culler's maximum age counts from it; the server warns its user from it)."""
        env = super().get_env()
        started = self.orm_spawner.started if self.orm_spawner is not None else None
        if started is not None and self.site is not None and self.site.culling.enabled:
            env["KIOSKHUB_SERVER_STARTED"] = started.replace(tzinfo=UTC).isoformat()
        return env

    # ---- the choice --------------------------------------------------------------

    def groups(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.user.groups)

    def why_not_runnable(self, environment: Environment) -> str | None:
        """None if this backend runs ``environment``, else the reason for the user."""
        if environment_kind(environment) in self.runnable_kinds:
            return None
        return refusal(environment, self.backend_name)

    async def user_environments(self) -> tuple[Environment, ...]:
        """Every environment the user may launch (before this backend's filter); the
        reader's notes, if any, in ``environment_notes``."""
        reader = self.environments_for_user
        extra = {}
        if getattr(reader, "needs_auth_state", False):
            extra["auth_state"] = await self.user.get_auth_state()
        environments = await reader(self.site, self.user.name, self.groups(), **extra)
        self.environment_notes = tuple(getattr(environments, "notes", ()))
        return tuple(environments)

    def runnable(self, environments) -> tuple[Environment, ...]:
        return tuple(e for e in environments if self.why_not_runnable(e) is None)

    def gpus_available(self) -> bool:
        """Whether GPU profiles may be chosen; a backend with GPUs says True."""
        return False

    def build_spec(self, options, environments) -> LaunchSpec:
        """Pure: the LaunchSpec of ``options`` among ``environments``; ChoiceError if refused."""
        options = normalise_options(options)
        named = next((e for e in environments if e.name == options.get("environment")), None)
        reason = self.why_not_runnable(named) if named else None
        if reason and allowed([named], self.groups()):
            raise ChoiceError(reason)
        site = self.site.model_copy(update={"environments": self.runnable(environments)})
        return build_launch_spec(
            site,
            self.user.name,
            self.groups(),
            options,
            server_name=self.name,
            gpus_available=self.gpus_available(),
        )

    async def check_choice(self, options) -> LaunchSpec:
        """JupyterHub's ``apply_user_options``: the LaunchSpec for the next start, or a 400."""
        environments = await self.user_environments()
        try:
            spec = self.build_spec(options, environments)
            identity = await resolve_identity(
                self.site, self.user.name, lambda: self.user.get_auth_state()
            )
        except IdentityError as error:
            await self.forget_identity()
            metrics.record_refusal(self.backend_name, "identity")
            raise SpawnRefused(400, "%s", str(error)) from None
        except ChoiceError as error:
            metrics.record_refusal(self.backend_name, "choice")
            raise SpawnRefused(400, "%s", str(error)) from None
        spec = replace(spec, identity=identity)
        self._checked = (dict(options or {}), spec, self._summarise(spec, environments))
        self.checked_environments = environments
        return spec

    def _summarise(self, spec: LaunchSpec, environments) -> str:
        environment = next(e for e in environments if e.name == spec.environment.name)
        profile = next(p for p in self.site.profiles if p.name == spec.profile)
        return f"{environment.title} · {profile.title}"

    def config_summary(self) -> str:
        """The summary of ``user_options`` among the site config's environments, or ''.

        For servers of an earlier version, whose state kept no summary; reads no files.
        """
        environments = self.runnable(self.site.environments)
        try:
            return self._summarise(self.build_spec(self.user_options, environments), environments)
        except (ChoiceError, StopIteration):
            return ""

    def options_profile(self) -> str:
        """The profile ``user_options`` name among the site config's, or ''; reads no files."""
        options = normalise_options(self.user_options)
        try:
            return pick("profile", self.site.profiles, options.get("profile"), self.groups()).name
        except ChoiceError:
            return ""

    @property
    def choice_summary(self) -> str:
        """'Python 3 · Small' for the hub's home page (kept from the start: no I/O here)."""
        if self.summary:
            return self.summary
        return ", ".join(f"{k}: {v}" for k, v in (self.user_options or {}).items())

    async def render_form(self) -> str:
        """KioskHub's spawn form with the environments and profiles the user may choose;
        those this backend cannot run are shown, not choosable, with the reason."""
        groups = self.groups()
        environments = allowed(await self.user_environments(), groups)
        refused = {e.name: why for e in environments if (why := self.why_not_runnable(e))}
        notes = "".join(
            f'<p class="alert alert-warning kh-note">{escape(note)}</p>'
            for note in self.environment_notes
        )
        quota = await server_quota.overview_line(
            self.site, self.user.name, groups, bool(self.user.admin)
        )
        if quota:
            notes += f'<p class="alert alert-info kh-quota">{escape(quota)}</p>'
        return notes + render_spawn_form(
            environments, allowed(self.site.profiles, groups), self.user_options, refused
        )

    def options_from_form(self, formdata):
        return options_from_form(formdata)

    # ---- start -------------------------------------------------------------------

    async def start(self):
        self._progress_events = []
        self._starting = True
        try:
            return await self._start_counted(await self._spec_for_start())
        finally:
            self._starting = False

    @property
    def running_metric(self) -> metrics.RunningServer:
        """This server's part in the running-servers and GPU gauges."""
        if not hasattr(self, "_running_metric"):
            self._running_metric = metrics.RunningServer()
        return self._running_metric

    async def _start_counted(self, spec: LaunchSpec):
        """``_start_checked``, counted in the spawn metrics (a refusal is not a failure)."""
        began = time.monotonic()
        try:
            address = await self._start_checked(spec)
        except SpawnRefused:
            raise
        except BaseException:
            metrics.record_spawn(
                self.backend_name, spec.profile, "failure", time.monotonic() - began
            )
            raise
        metrics.record_spawn(self.backend_name, spec.profile, "success", time.monotonic() - began)
        self.running_metric.running(self.backend_name, spec.profile, spec.gpu_count)
        return address

    async def _spec_for_start(self) -> LaunchSpec:
        checked = getattr(self, "_checked", None)
        self._checked = None
        if checked is None or checked[0] != dict(self.user_options or {}):
            await self.check_choice(self.user_options)
            checked, self._checked = self._checked, None
        self.spec, self.summary = checked[1], checked[2]
        return self.spec

    async def _start_checked(self, spec: LaunchSpec):
        self.launch_state = {}
        await self._reserve_usage(spec)
        try:
            gpu_devices = await self._assign_gpus(spec) if self.assigns_gpus else None
            await self.prepare(spec, gpu_devices)
            await self.record_identity(spec)
        except BaseException:
            await self.usage.discard()
            await self._release_all()
            raise
        try:
            async for checkpoint in self.launch(spec):
                self.launch_state = {**self.launch_state, **checkpoint}
            if self.waits_for_answer:
                await self.wait_until_answering()
        except BaseException:
            await self.usage.discard()
            await self._tear_down_quietly()
            raise
        await self.usage.started(time.time())
        return self.server_address()

    async def _reserve_usage(self, spec: LaunchSpec) -> None:
        """Reserve the server's usage record, where the quotas are checked; a refusal
        (403, saying which quota and what uses it) starts nothing."""
        record = usage_recorder.new_record(
            self.site, spec, self.groups(), self.backend_name, time.time()
        )
        refusal = await self.usage.reserve(record, is_admin=bool(self.user.admin))
        if refusal is not None:
            metrics.record_refusal(self.backend_name, "quota")
            raise SpawnRefused(403, "%s", refusal.message)

    @property
    def usage(self) -> usage_recorder.UsageRecorder:
        """The usage record of this spawner's server (accounting)."""
        if getattr(self, "_usage", None) is None:
            self._usage = usage_recorder.UsageRecorder(
                self.site, self.usage_cgroup_dirs, self._log_name
            )
        return self._usage

    async def record_identity(self, spec: LaunchSpec) -> None:
        """Record the lab identity the server runs as, for the Dask Gateway; nothing for
        a kh- account."""
        if spec.identity is None:
            return
        try:
            await asyncio.to_thread(
                identity_record.write_record, self.site.hub.state_dir, spec.username, spec.identity
            )
        except (OSError, identity_record.RecordError) as error:
            raise web.HTTPError(
                500, "%s", f"Could not record your lab identity for your Dask clusters: {error}"
            ) from None

    async def forget_identity(self) -> None:
        """Remove the user's recorded identity: they have no valid one any more, and
        their clusters must not run as the one they had."""
        try:
            await asyncio.to_thread(
                identity_record.remove_record, self.site.hub.state_dir, self.user.name
            )
        except (OSError, identity_record.RecordError) as error:
            self.log.error("Could not remove the identity record of %s: %s", self.user.name, error)

    async def _tear_down_quietly(self) -> None:
        self._starting = False  # from here on, poll reports what is left
        try:
            await self.tear_down()
        except Exception:
            self.log.exception("Could not tear down the failed start of %s", self._log_name)
        await self._release_all()

    async def wait_until_answering(self) -> None:
        """Return once ``answering()``; explain with the server's log when it cannot."""
        deadline = time.monotonic() + max(self.start_timeout - 3, 2)
        next_poll = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_poll:
                status = await self.poll_server()
                if status is not None:
                    raise web.HTTPError(
                        500,
                        "%s",
                        f"Your server exited during start (exit status {status}). "
                        f"Its last log lines:\n{await self.log_tail()}",
                    )
                next_poll = time.monotonic() + self.start_poll_interval
            if await self.answering():
                return
            await asyncio.sleep(0.2)
        raise web.HTTPError(
            500,
            "%s",
            f"Your server did not start within {self.start_timeout} seconds. "
            f"Its last log lines:\n{await self.log_tail()}",
        )

    # ---- GPUs ----------------------------------------------------------------------

    @property
    def server_id(self) -> str:
        return f"{self.user.name}-{self.name}" if self.name else self.user.name

    async def _assign_gpus(self, spec: LaunchSpec) -> str | None:
        if not spec.gpu_count:
            return None
        state_dir = self.site.hub.state_dir
        try:
            found, busy = await gpus.discover_gpus()
            taken = await asyncio.to_thread(
                gpu_assignments.assigned_elsewhere, state_dir, self.server_id
            )
            chosen = gpus.choose_gpus(found, busy, taken, spec.gpu_count, spec.gpu_type)
        except gpus.NoFreeGpu as error:
            metrics.record_refusal(self.backend_name, "no_free_gpu")
            raise SpawnRefused(503, "%s", str(error)) from None
        except gpus.GpuDiscoveryError as error:
            raise web.HTTPError(503, "%s", str(error)) from None
        await asyncio.to_thread(
            gpu_assignments.record_assignment, state_dir, self.server_id, chosen
        )
        self.gpu_uuids = ",".join(g.uuid for g in chosen)
        return gpus.cuda_visible_devices(chosen)

    async def _release_all(self) -> None:
        """Close the usage record, then give back the GPUs and what ``release`` frees,
        once the server is gone."""
        self.running_metric.gone()
        await self.usage.close(stopped=False)
        await self.release()
        if self.gpu_uuids:
            await asyncio.to_thread(
                gpu_assignments.release_assignment, self.site.hub.state_dir, self.server_id
            )
            self.gpu_uuids = ""

    # ---- poll, stop, state --------------------------------------------------------------

    async def poll(self):
        """None while starting or running; the exit status once stopped; 0 if never started."""
        if getattr(self, "_starting", False):
            return None
        status = await self.poll_server()
        if status is not None:
            await self._release_all()
        return status

    async def stop(self, now=False):
        await stop_user_clusters(self.site, self.api_token, self._log_name)
        await self.stop_server(now)
        await self.usage.close(stopped=True)
        await self._release_all()

    def get_state(self):
        state = super().get_state()
        if self.launch_state:
            state["kioskhub"] = {
                "version": self.state_version,
                "launch": dict(self.launch_state),
                "gpus": self.gpu_uuids,
                "summary": self.summary,
            }
            if self.usage.record_id:
                state["kioskhub"]["usage"] = self.usage.record_id
        return state

    def load_state(self, state):
        super().load_state(state)
        saved = state.get("kioskhub")
        if saved is None:
            saved = self.upgrade_state(state)
            if saved and "summary" not in saved:
                saved["summary"] = self.config_summary()
        elif saved.get("version") != self.state_version:
            self.log.warning("Ignoring the state of %s: unknown version", self._log_name)
            saved = None
        if saved:
            self.launch_state = dict(saved["launch"])
            self.gpu_uuids = saved.get("gpus", "")
            self.summary = saved.get("summary", "")
            self.readopt(self.launch_state)
            self.running_metric.running(
                self.backend_name,
                self.options_profile(),
                len(self.gpu_uuids.split(",")) if self.gpu_uuids else 0,
            )
            self.usage.resume(saved.get("usage", ""))

    def clear_state(self):
        super().clear_state()
        self.launch_state, self.summary, self.spec = {}, "", None

    # ---- the steps a backend implements ------------------------------------------

    async def prepare(self, spec: LaunchSpec, gpu_devices: str | None) -> None:
        """Checks and I/O before anything starts (nothing here needs a tear-down)."""

    def launch(self, spec: LaunchSpec) -> AsyncIterator[dict[str, Any]]:
        """Start the server, yielding checkpoints (dicts merged into ``launch_state``)."""
        raise NotImplementedError

    def server_address(self):
        """What ``start`` returns to JupyterHub: (ip, port) or a URL."""
        raise NotImplementedError

    async def answering(self) -> bool:
        """Whether the server is up: ``accepts_connections`` or ``answers_http`` of it."""
        raise NotImplementedError

    async def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "(no log)"

    async def poll_server(self) -> int | None:
        raise NotImplementedError

    async def stop_server(self, now: bool) -> None:
        raise NotImplementedError

    async def tear_down(self) -> None:
        """Remove whatever ``launch`` made, as far as ``launch_state`` says it got."""
        await self.stop_server(True)

    async def release(self) -> None:
        """Give back what a gone server held on the hub's machine."""

    def usage_cgroup_dirs(self) -> tuple[str, ...]:
        """The running server's cgroup folders on this machine, for its usage record."""
        return ()

    def readopt(self, launch_state: dict[str, Any]) -> None:
        """Restore the backend's attributes from a saved ``launch_state``."""

    def upgrade_state(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """State written by the previous version, as ``{"launch", "gpus"}``; None if none."""
        return None
