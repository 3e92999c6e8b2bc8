"""The server that re-executes gallery versions: ``/hub/api/gallery/reexecution-server``.

Runs in the hub (``JupyterHub.extra_handlers``); only a token holding the custom scope
``custom:gallery:reexecute`` may call it, and only the gallery service holds it. The
server is the default server of the hub user ``gallery-run`` (``REEXECUTION_USER``, a
reserved username: no one signs in as it), made here when missing, so a version runs as an
unprivileged account of its own (``kh-gallery-run`` on ``local``) with the data mounts
read-only, as every user's server has them.

- ``POST`` with ``{environment, profile}``: empties that user's home (below), then starts
  its server with that choice in the background; 202 with the state. 409 while it runs.
- ``GET``: ``{state, url, problem}``; ``state`` is ``running``, ``spawn``, ``stop``,
  ``stopped`` or ``failed`` (``problem`` says why); ``url`` is the server's own address
  while it runs.
- ``DELETE``: stops the server and empties the home.

The home is removed before each start and after each stop (``workshop_home_removal``: by a
child process that has become the home's owner, never following a link), so nothing a
notebook leaves there (a ``~/.jupyter`` config, a startup file) reaches the next version's
run. Homes are folders of this machine only on ``local`` and ``podman``; elsewhere the
hub refuses to start the server.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from kioskhub.hub.schema.site import Site
from kioskhub.hub.workshop_class import problem_text
from kioskhub.hub.workshop_home_owner import HomeOwnerRefused, temporary_home_owner
from kioskhub.hub.workshop_home_removal import HomeNotRemoved, remove_home

REEXECUTE_SCOPE = "custom:gallery:reexecute"
REEXECUTION_USER = "gallery-run"
HOME_BACKENDS = ("local", "podman")


class ReexecutionStarts:
    """The start under way in this hub, and the problem of the last one."""

    def __init__(self) -> None:
        self.task: asyncio.Task | None = None
        self.problem: str | None = None


class ReexecutionServerHandler(APIHandler):
    def initialize(self, site: Site, starts: ReexecutionStarts) -> None:
        self.site = site
        self.starts = starts

    def check_scope(self) -> None:
        if REEXECUTE_SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, "only the gallery starts re-execution servers")

    def reexecution_user(self):
        return self.user_from_username(REEXECUTION_USER)

    def answer(self, user) -> dict[str, Any]:
        spawner = user.get_spawner("", replace_failed=True)
        if spawner.ready:
            return {"state": "running", "url": spawner.server.url, "problem": None}
        if spawner.pending or (self.starts.task and not self.starts.task.done()):
            return {"state": spawner.pending or "spawn", "url": None, "problem": None}
        if self.starts.problem:
            return {"state": "failed", "url": None, "problem": self.starts.problem}
        return {"state": "stopped", "url": None, "problem": None}

    async def get(self) -> None:
        self.check_scope()
        self.finish(json.dumps(self.answer(self.reexecution_user())))

    async def post(self) -> None:
        self.check_scope()
        if self.site.spawner.backend not in HOME_BACKENDS:
            raise web.HTTPError(
                409,
                "re-execution runs on the local and podman backends only; this site uses %r",
                self.site.spawner.backend,
            )
        body = self.get_json_body() or {}
        options = {name: body.get(name) for name in ("environment", "profile") if body.get(name)}
        if not all(isinstance(value, str) for value in options.values()):
            raise web.HTTPError(400, "'environment' and 'profile' must be names")
        user = self.reexecution_user()
        spawner = user.get_spawner("", replace_failed=True)
        if spawner.active or spawner.pending or (self.starts.task and not self.starts.task.done()):
            raise web.HTTPError(409, "a re-execution server is already running")
        self.starts.problem = None
        self.starts.task = asyncio.ensure_future(self.start(user, options))
        self.set_status(202)
        self.finish(json.dumps(self.answer(user)))

    async def start(self, user, options: dict[str, str]) -> None:
        try:
            await self.empty_home()
            spawner = user.get_spawner("", replace_failed=True)
            await self.spawn_single_user(user, "", options=options)
            if spawner._spawn_future is not None:
                await spawner._spawn_future
        except Exception as error:  # noqa: BLE001 (said in the answer and the log)
            self.starts.problem = problem_text(error)
            self.log.warning("Gallery re-execution server failed: %s", self.starts.problem)

    async def delete(self) -> None:
        self.check_scope()
        user = self.reexecution_user()
        spawner = user.get_spawner("", replace_failed=True)
        if self.starts.task and not self.starts.task.done():
            await asyncio.wait([self.starts.task])
        if spawner.active or spawner.pending:
            await self.stop_single_user(user, "")
        done = await self.empty_home()
        self.finish(json.dumps({"state": "stopped", "home": done}))

    async def empty_home(self) -> str:
        """Remove ``gallery-run``'s home as its owner (it is made again at the next start)."""
        home = self.site.home.root / REEXECUTION_USER
        try:
            owner = await asyncio.to_thread(temporary_home_owner, self.site, REEXECUTION_USER)
        except HomeOwnerRefused as error:
            raise web.HTTPError(500, "%s", str(error)) from None
        if owner is None:
            return f"no account owns {home} yet"
        try:
            return await remove_home(home, owner.uid, owner.gid, shared=owner.shared)
        except HomeNotRemoved as error:
            raise web.HTTPError(500, "%s", str(error)) from None


def reexecution_hub_routes(site: Site) -> list[tuple[str, type, dict]]:
    starts = ReexecutionStarts()
    return [
        (
            r"/api/gallery/reexecution-server",
            ReexecutionServerHandler,
            {"site": site, "starts": starts},
        )
    ]
