"""BurstingSpawner: a server starts on the first of its profile's backends that has room.

It is JupyterHub's spawner where a profile lists ``backends`` (cloud bursting). For each start
it measures each listed backend's room, lets ``burst_choice.choose_backend`` (pure) pick one,
and hands the start to a spawner of that backend (``SpawnBackend``: the same choice, quotas,
usage records and steps as anywhere), made with the very arguments JupyterHub gave this one.
The user is told where the server runs, in the progress and beside the server's summary. The
state remembers which backend holds the server (versioned), so poll, stop and a restarted hub
reach the right one. The spawn form and the choice are those of ``spawner.backend``'s spawner.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from typing import Any

import psutil
from jupyterhub.spawner import Spawner
from traitlets import Instance, Unicode, default

from kioskhub.hub.schema.openstack import flavor_of
from kioskhub.hub.schema.site import Site

from . import openstack_cloud, usage_store
from .base import SpawnRefused
from .burst_choice import NoRoom, Room, choose_backend, cloud_room, machine_room
from .launch_spec import normalise_options

STATE_VERSION = 1
HANDED_OVER = (
    "api_token",
    "admin_access",
    "cert_paths",
    "server",
    "user_options",
    "handler",
)
"""What JupyterHub sets on its spawner before ``start``, handed on to the chosen backend's."""


def spawner_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class BurstingSpawner(Spawner):
    """Delegate each start to the first of the profile's backends with room."""

    site = Instance(Site, config=True, help="The validated site config (set by KioskHub).")
    spawner_classes = Instance(dict, args=(), config=True, help="backend → spawner class path.")
    backend = Unicode("", help="The backend that holds the running server (kept in the state).")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._arguments = dict(kwargs)
        self._children: dict[str, Spawner] = {}

    def child(self, backend: str) -> Spawner:
        """The spawner of ``backend`` for this user's server, made once."""
        if backend not in self._children:
            made = spawner_class(self.spawner_classes[backend])(**self._arguments)
            self._children[backend] = made
        return self._children[backend]

    @property
    def primary(self) -> Spawner:
        return self.child(self.site.spawner.backend)

    @property
    def running(self) -> Spawner | None:
        return self.child(self.backend) if self.backend else None

    # ---- the form and the choice: spawner.backend's ---------------------------------

    @default("options_form")
    def _default_options_form(self):
        async def primary_form(spawner):
            return await spawner.primary.get_options_form()

        return primary_form

    def options_from_form(self, formdata):
        return self.primary.options_from_form(formdata)

    @default("apply_user_options")
    def _default_apply_user_options(self):
        def kept_for_the_chosen_backend(spawner, user_options):
            """The chosen backend checks the choice at its start."""

        return kept_for_the_chosen_backend

    @property
    def choice_summary(self) -> str:
        running = self.running
        summary = getattr(running, "choice_summary", "") if running else ""
        return f"{summary} · on {self.backend}" if summary else ""

    # ---- start ----------------------------------------------------------------------

    async def start(self):
        self._progress_events = []
        profile = self._profile()
        backends = self.site.profile_backends(profile)
        rooms = await self.measure_rooms(profile, backends)
        try:
            chosen, where = choose_backend(backends, rooms)
        except NoRoom as error:
            raise SpawnRefused(503, "%s", str(error)) from None
        self.log.info("%s: %s", self._log_name, where)
        self._progress_events.append({"progress": 5, "message": where})
        child = self.child(chosen)
        for name in HANDED_OVER:
            setattr(child, name, getattr(self, name))
        self.backend = chosen
        try:
            return await child.start()
        except BaseException:
            self.backend = ""
            raise

    def _profile(self):
        name = normalise_options(self.user_options).get("profile")
        profiles = self.site.profiles
        return next(
            (p for p in profiles if p.name == name),
            next((p for p in profiles if p.default), profiles[0]),
        )

    async def measure_rooms(self, profile, backends) -> dict[str, Room]:
        """Each backend's room for ``profile`` (network and file I/O in threads)."""
        rooms = {}
        for backend in backends:
            if backend in ("local", "podman"):
                rooms[backend] = await asyncio.to_thread(self._machine_room, backend, profile)
            elif backend == "openstack":
                rooms[backend] = await asyncio.to_thread(self._cloud_room, profile)
            else:
                rooms[backend] = Room(backend, True)
        return rooms

    def _machine_room(self, backend: str, profile) -> Room:
        spawner = self.site.spawner
        capacity = (
            spawner.local_cpu or float(os.cpu_count() or 1),
            spawner.local_memory or psutil.virtual_memory().total,
        )
        path = usage_store_path(self.site)
        held = [
            r
            for r in usage_store.current_records(path, time.time())
            if r.end is None and r.kind == "server" and r.backend in ("local", "podman")
        ]
        used = (sum(r.cpu_cores for r in held), sum(r.memory_requested for r in held))
        return machine_room(backend, capacity, used, (profile.cpu, profile.memory))

    def _cloud_room(self, profile) -> Room:
        flavor = flavor_of(self.site.openstack, profile.name) or ""
        try:
            connection = openstack_cloud.connect(self.site.openstack)
            size = openstack_cloud.flavor_size(connection, flavor)
            free = openstack_cloud.free_compute(connection)
        except openstack_cloud.CloudError as error:
            return Room("openstack", False, f"the cloud did not answer ({error})")
        return cloud_room(free, flavor, size)

    async def progress(self):
        for event in getattr(self, "_progress_events", []):
            yield event
        if self.backend:
            async for event in self.child(self.backend).progress():
                yield event

    # ---- poll, stop, state: the backend that holds the server -------------------------

    async def poll(self):
        running = self.running
        if running is None:
            return 0
        return await running.poll()

    async def stop(self, now=False):
        running = self.running
        if running is not None:
            await running.stop(now)

    def get_state(self):
        state = super().get_state()
        if self.backend:
            state["bursting"] = {
                "version": STATE_VERSION,
                "backend": self.backend,
                "state": self.child(self.backend).get_state(),
            }
        return state

    def load_state(self, state):
        super().load_state(state)
        saved = state.get("bursting")
        if not saved or saved.get("version") != STATE_VERSION:
            return
        if saved["backend"] not in self.spawner_classes:
            self.log.warning("Ignoring the state of %s: unknown backend", self._log_name)
            return
        self.backend = saved["backend"]
        self.child(self.backend).load_state(saved["state"])

    def clear_state(self):
        super().clear_state()
        if self.backend:
            self.child(self.backend).clear_state()
        self.backend = ""


def usage_store_path(site: Site):
    from kioskhub.hub.schema.accounting import usage_database

    return usage_database(site.hub.state_dir)
