"""What the teachers' page and API share: who is asking, their events, and the class actions.

``WorkshopHandling`` is mixed into JupyterHub handlers (``BaseHandler`` or ``APIHandler``).
Every action goes through ``teacher()`` (a member of ``workshops.teacher_groups`` or an
admin, else 403) and ``own_event()`` (the teacher's own event, else 403), and acts on
users only through the event's participant list (``participants_named``), so a teacher
can start, stop or read no one outside their own events. The store is read in a thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC
from pathlib import Path

from tornado import web

from kioskhub.hub.schema.site import Site

from . import workshop_store as store
from .workshop_access import may_manage, may_teach, participant_of
from .workshop_events import EventRequest, iso_utc
from .workshop_prewarm import servers_to_prewarm
from .workshop_roles import grant_teacher_role
from .workshop_store import Event, Participant

TOKEN_SCOPE = "servers"
NOT_A_TEACHER = (
    "Workshops are for teachers: ask the site admin to add you to one of the groups {groups}"
)


class WorkshopHandling:
    """Mixed into the Workshops handlers; ``initialize`` takes the site."""

    def initialize(self, site: Site) -> None:
        self.site = site
        self.store_path: Path = store.database(site.hub.state_dir)

    # ---- who -------------------------------------------------------------------

    def teacher(self):
        """The signed-in user if they may teach, else 403 with what to do. A token must
        hold the teacher's own ``servers`` scope (as every token made without a scope
        list does): one restricted to, say, ``read:users`` cannot run events."""
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "sign in first")
        if TOKEN_SCOPE not in self.parsed_scopes:
            raise web.HTTPError(
                403,
                "this token lacks the %s scope that running workshop events needs",
                TOKEN_SCOPE,
            )
        if getattr(user, "kind", "user") != "user" or not may_teach(
            self.site, [group.name for group in user.groups], bool(user.admin)
        ):
            groups = ", ".join(self.site.workshops.teacher_groups) or "(none are named)"
            raise web.HTTPError(403, NOT_A_TEACHER.format(groups=groups))
        return user

    async def own_event(self, event_id: str) -> Event:
        """The teacher's event ``event_id``: 404 if there is none, 403 if another's."""
        user = self.teacher()
        event = await asyncio.to_thread(store.get_event, self.store_path, event_id)
        if event is None:
            raise web.HTTPError(404, "no workshop event %s", event_id)
        if not may_manage(event, user.name, bool(user.admin)):
            raise web.HTTPError(
                403,
                "the event %s is another teacher's; you act only on your own events",
                event_id,
            )
        return event

    async def participants_named(self, event: Event, names: list[str] | None) -> list[Participant]:
        """The event's participants, or those of them in ``names``; 403 for any other name."""
        everyone = await asyncio.to_thread(store.participants, self.store_path, event.event_id)
        if names is None:
            return everyone
        chosen = []
        for name in names:
            participant = participant_of(everyone, str(name))
            if participant is None:
                raise web.HTTPError(
                    403,
                    "%s is not a participant of the event %s; teachers act only on their "
                    "own events' participants",
                    str(name)[:64],
                    event.event_id,
                )
            chosen.append(participant)
        return chosen

    # ---- the event ---------------------------------------------------------------

    async def create_event(self, request: EventRequest) -> Event:
        """A new event of the signed-in teacher, with a fresh code, group and teacher role."""
        user = self.teacher()
        for _attempt in range(5):
            event = Event(
                event_id=store.new_event_id(),
                teacher=user.name,
                code=store.new_code(),
                created=time.time(),
                **request.__dict__,
            )
            try:
                await asyncio.to_thread(store.create_event, self.store_path, event)
                break
            except sqlite3.IntegrityError:  # the id or code exists already: draw again
                continue
        else:
            raise web.HTTPError(500, "could not draw a free event code; try again")
        grant_teacher_role(self.db, event)
        self.log.info("Workshop %s created by %s", event.event_id, user.name)
        return event

    async def change_event(self, event: Event, request: EventRequest) -> Event:
        taken = len(await asyncio.to_thread(store.participants, self.store_path, event.event_id))
        if request.seats < taken:
            raise web.HTTPError(
                400, "seats: %d participants have joined; give at least %d seats", taken, taken
            )
        return await asyncio.to_thread(
            store.update_event, self.store_path, event.event_id, **request.__dict__
        )

    async def rotate_code(self, event: Event) -> Event:
        """A new join code; the old one stops working at once."""
        for _attempt in range(5):
            try:
                return await asyncio.to_thread(
                    store.update_event, self.store_path, event.event_id, code=store.new_code()
                )
            except sqlite3.IntegrityError:
                continue
        raise web.HTTPError(500, "could not draw a free event code; try again")

    async def revoke_code(self, event: Event) -> Event:
        return await asyncio.to_thread(store.update_event, self.store_path, event.event_id, code="")

    async def end_now(self, event: Event) -> Event:
        """The event ends now (its grace period follows) and its code stops working."""
        now = time.time()
        changes = {"end": min(event.end, now), "start": min(event.start, now), "code": ""}
        return await asyncio.to_thread(
            store.update_event, self.store_path, event.event_id, **changes
        )

    def join_url(self, event: Event) -> str:
        if not event.code:
            return ""
        return f"{self.site.hub.url}{self.hub.base_url}join/{event.code}"

    def event_model(self, event: Event) -> dict:
        model = dict(event.__dict__)
        model.update(
            start=iso_utc(event.start),
            end=iso_utc(event.end),
            created=iso_utc(event.created),
            expired=iso_utc(event.expired) if event.expired else None,
            grace_minutes=round(event.grace_seconds / 60),
            group=event.group,
            join_url=self.join_url(event),
        )
        del model["grace_seconds"]
        return model

    # ---- the class -----------------------------------------------------------------

    def server_of(self, participant: Participant) -> dict:
        """A participant's row in the class view: names, server state, last activity."""
        row = {
            "username": participant.username,
            "display_name": participant.display_name,
            "temporary": participant.temporary,
            "joined": iso_utc(participant.joined),
            "server": "no account",
            "last_activity": None,
        }
        user = self.find_user(participant.username)
        if user is None:
            return row
        row["server"] = "stopped"
        activity = [user.last_activity]
        if "" in user.orm_spawners:
            spawner = user.spawners[""]
            activity.append(spawner.orm_spawner.last_activity)
            if spawner.pending:
                row["server"] = "pending"
            elif spawner.ready:
                row["server"] = "running"
        seen = [moment for moment in activity if moment is not None]
        if seen:
            row["last_activity"] = iso_utc(max(seen).replace(tzinfo=UTC).timestamp())
        return row

    async def warm_seats(self, event: Event) -> dict[str, int]:
        """The pre-warmed seats no participant took yet, and how many of their servers run."""
        taken = await asyncio.to_thread(
            store.temporary_seats_taken, self.store_path, event.event_id
        )
        names = servers_to_prewarm(self.site, event, taken)
        users = [self.find_user(name) for name in names]
        running = sum(
            1
            for user in users
            if user is not None and "" in user.orm_spawners and user.spawner.ready
        )
        return {"seats": len(names), "running": running}

    async def class_rows(self, event: Event) -> list[dict]:
        everyone = await asyncio.to_thread(store.participants, self.store_path, event.event_id)
        return [self.server_of(participant) for participant in everyone]

    async def start_servers(self, event: Event, chosen: list[Participant]) -> dict[str, str]:
        """Start each participant's server with the event's environment and profile, at
        once; what became of each (started, pending, running, no account, or the error)."""
        options = {"environment": event.environment, "profile": event.profile}
        outcomes = await asyncio.gather(
            *(self._start_one(p.username, options) for p in chosen), return_exceptions=True
        )
        return {
            p.username: outcome if isinstance(outcome, str) else problem_text(outcome)
            for p, outcome in zip(chosen, outcomes, strict=True)
        }

    async def _start_one(self, name: str, options: dict) -> str:
        user = self.find_user(name)
        if user is None:
            return "no account"
        spawner = user.get_spawner("", replace_failed=True)
        if spawner.pending:
            return "pending"
        if spawner.ready:
            return "running"
        await self.spawn_single_user(user, "", options=dict(options))
        return "pending" if spawner.pending else "started"

    async def stop_servers(self, chosen: list[Participant]) -> dict[str, str]:
        """Stop each participant's server, at once; what became of each."""
        outcomes = await asyncio.gather(
            *(self._stop_one(p.username) for p in chosen), return_exceptions=True
        )
        return {
            p.username: outcome if isinstance(outcome, str) else problem_text(outcome)
            for p, outcome in zip(chosen, outcomes, strict=True)
        }

    async def _stop_one(self, name: str) -> str:
        user = self.find_user(name)
        if user is None:
            return "no account"
        if "" not in user.orm_spawners:
            return "stopped"
        spawner = user.spawners[""]
        if spawner.pending == "stop":
            return "stopping"
        if spawner.pending == "spawn" and spawner._spawn_future:
            spawner._spawn_future.cancel()
            await asyncio.sleep(1)
        elif not spawner.active:
            return "stopped"
        future = await self.stop_single_user(user, "")
        return "stopped" if future.done() else "stopping"


def problem_text(error: BaseException) -> str:
    """An error of a start or stop as a person reads it (no traceback)."""
    if isinstance(error, web.HTTPError):
        try:
            return (error.log_message or "") % error.args if error.args else error.log_message
        except TypeError:
            return str(error.log_message)
    return str(error) or type(error).__name__
