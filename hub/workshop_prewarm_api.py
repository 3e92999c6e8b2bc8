"""Starting the servers of an event's untaken seats ahead: ``POST /hub/api/workshops/<id>/prewarm``.

Asked every round by the ``workshop-schedule`` service (``workshop_prewarm``), whose
token alone holds the custom scope ``custom:workshops:prewarm``; no user or teacher
holds it. The hub checks the event itself (it exists, and ``now`` lies in its
pre-warming window), makes the hub users of the seats no participant took yet
(``ws-<event>-<nnn>``, from ``workshop_prewarm.servers_to_prewarm``: never any other
name), puts them in the event's group, and starts their servers with the event's
environment and profile, ``PREWARM_AT_ONCE`` at a time, in the background. The answer
(202) is each seat's state: running, spawn or stop (under way), queued, or the problem
of its last start. A second request while a round runs only reports.

No one holds these seats' cookies until a participant joins and takes one
(``workshop_join``): the participant then signs in as that seat's user and finds its
server running.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from kioskhub.hub.schema.site import Site

from . import workshop_store as store
from .workshop_api import EVENT_ID
from .workshop_class import problem_text
from .workshop_prewarm import events_to_prewarm, servers_to_prewarm
from .workshop_roles import add_to_group

PREWARM_SCOPE = "custom:workshops:prewarm"
UNDER_WAY = ("running", "spawn", "stop")
PREWARM_AT_ONCE = 2
"""Servers started at once by one event's pre-warming: starts are CPU-bound, and the
hub serves its users meanwhile."""


class PrewarmRounds:
    """The pre-warming rounds running in this hub: event id → task, and the last problem
    of each seat's start."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Task] = {}
        self.problems: dict[str, str] = {}


class WorkshopPrewarmAPIHandler(APIHandler):
    def initialize(self, site: Site, rounds: PrewarmRounds) -> None:
        self.site = site
        self.rounds = rounds
        self.store_path = store.database(site.hub.state_dir)

    async def post(self, event_id: str) -> None:
        if PREWARM_SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, "only the workshop schedule pre-warms events")
        event = await asyncio.to_thread(store.get_event, self.store_path, event_id)
        if event is None:
            raise web.HTTPError(404, "no workshop event %s", event_id)
        if not events_to_prewarm(self.site, [event], time.time()):
            raise web.HTTPError(409, "the event %s is not in its pre-warming window", event_id)
        taken = await asyncio.to_thread(store.temporary_seats_taken, self.store_path, event_id)
        names = servers_to_prewarm(self.site, event, taken)
        seats = [self.seat_user(name, event) for name in names]
        stopped = [user for user in seats if self.state_of(user) not in UNDER_WAY]
        task = self.rounds.running.get(event_id)
        if stopped and (task is None or task.done()):
            task = asyncio.ensure_future(self.start_in_turn(event, stopped))
            self.rounds.running[event_id] = task
        states = {user.name: self.state_of(user) for user in seats}
        self.set_status(202)
        self.finish(json.dumps({"servers": states}))

    def seat_user(self, name: str, event: store.Event):
        """The hub user of an untaken seat, made when missing, in the event's group."""
        user = self.user_from_username(name)
        add_to_group(self.db, user.orm_user, event.group)
        return user

    def state_of(self, user) -> str:
        """running, pending (a start or stop under way), queued, or the last start's problem."""
        spawner = user.get_spawner("", replace_failed=True)
        if spawner.ready:
            return "running"
        if spawner.pending:
            return spawner.pending
        return self.rounds.problems.get(user.name, "queued")

    async def start_in_turn(self, event: store.Event, users: list[Any]) -> None:
        at_once = asyncio.Semaphore(PREWARM_AT_ONCE)
        options = {"environment": event.environment, "profile": event.profile}

        async def start(user) -> None:
            async with at_once:
                spawner = user.get_spawner("", replace_failed=True)
                if spawner.active or spawner.pending:
                    return
                try:
                    await self.spawn_single_user(user, "", options=dict(options))
                    if spawner._spawn_future is not None:
                        await spawner._spawn_future  # the next one starts when this one runs
                    self.rounds.problems.pop(user.name, None)
                except Exception as error:  # noqa: BLE001 (said in the answer and the log)
                    self.rounds.problems[user.name] = problem_text(error)
                    self.log.warning(
                        "Workshop %s: pre-warming %s failed: %s",
                        event.event_id,
                        user.name,
                        problem_text(error),
                    )

        started = time.monotonic()
        await asyncio.gather(*(start(user) for user in users))
        self.log.info(
            "Workshop %s: %d seats' servers pre-warmed in %.1f s",
            event.event_id,
            len(users),
            time.monotonic() - started,
        )


def prewarm_api_routes(site: Site) -> list[tuple]:
    options = {"site": site, "rounds": PrewarmRounds()}
    return [(rf"/api/workshops/{EVENT_ID}/prewarm", WorkshopPrewarmAPIHandler, options)]
