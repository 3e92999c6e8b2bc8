"""Joining a workshop event: ``/hub/join`` and ``/hub/join/<code>`` (JupyterHub handlers).

- ``GET /hub/join``: a form to type a code (``?code=…`` sends to the event's page).
- ``GET /hub/join/<code>``: the event's title and window, and a display-name form; a
  signed-in lab account gets "Join as <name>" instead.
- ``POST /hub/join/<code>``: rate-limited per client address: an address with
  ``workshops.join_attempts_per_minute`` failed attempts (wrong, revoked or closed codes,
  on the event page or its form) in the last minute is refused every join for a while, so
  codes cannot be guessed faster than that, while a class behind one address joins at
  once. Outside the window, with every seat taken, or with a wrong or
  revoked code the page says which and nothing is created. Otherwise a seat is taken
  (``workshop_store.take_seat``), the temporary user ``ws-<event>-<nnn>`` is made and put
  in the event's group, signed in with the hub's cookie, and its server started with the
  event's environment and profile; the spawn-pending page then sends it to nbgitpuller's
  link (``workshop_materials.pull_link``), which pulls the materials as the participant.

The display name is any text of 1–60 characters; it is stored and shown (escaped by the
templates), never used in a username or path. No authenticator makes ``ws-`` users:
``schema.site.RESERVED_PREFIXES`` refuses the prefix at every sign-in. A temporary user
(a participant, or a gallery reviewer's ``rv-`` seat) never joins as itself, so a seat
never enters an event's group: it joins as a new participant, as a visitor would.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

from kioskhub.hub.schema.gallery import SEAT_PREFIX
from kioskhub.hub.schema.site import Site
from kioskhub.hub.schema.workshops import PARTICIPANT_PREFIX

from . import workshop_store
from .workshop_admission import (
    JoinRateLimiter,
    JoinRefusal,
    display_name_problem,
    rate_refusal,
    seats_refusal,
    shown_time,
    window_refusal,
)
from .workshop_materials import pull_link
from .workshop_roles import add_to_group
from .workshop_store import Event, SeatsTaken

TEMPORARY_PREFIXES = (PARTICIPANT_PREFIX, SEAT_PREFIX)


class JoinBase(BaseHandler):
    """What both pages share: the store, the limiter, the refusal page."""

    def initialize(self, state_dir: str, limiter: JoinRateLimiter, folder: str) -> None:
        self.database = workshop_store.database(Path(state_dir))
        self.limiter = limiter
        self.folder = folder

    def get_content_type(self) -> str:
        return "text/html; charset=UTF-8"  # titles and names are any text

    async def refuse(self, refusal: JoinRefusal) -> None:
        self.set_status(refusal.status)
        if refusal.retry_after:
            self.set_header("Retry-After", str(refusal.retry_after))
        html = await self.render_template("join.html", event=None, refusal=refusal)
        self.finish(html)

    def rate_limited(self) -> JoinRefusal | None:
        wait = self.limiter.retry_after(self.address, time.time())
        return rate_refusal(wait) if wait else None

    @property
    def address(self) -> str:
        return self.request.remote_ip or ""


class JoinCodeFormHandler(JoinBase):
    """``/hub/join``: type the code your teacher gave you."""

    async def get(self) -> None:
        code = workshop_store.normal_code(self.get_argument("code", ""))
        if code:
            self.redirect(url_path_join(self.hub.base_url, "join", quote(code, safe="")))
            return
        self.finish(await self.render_template("join.html", event=None, refusal=None))


class JoinEventHandler(JoinBase):
    """``/hub/join/<code>``: the event's page, and joining it."""

    async def joinable_event(self, code: str) -> Event | None:
        """The event of ``code`` if it may be joined now; else the refusal page, and None."""
        refusal = self.rate_limited()
        event = None
        if refusal is None:
            event = await asyncio.to_thread(workshop_store.event_by_code, self.database, code)
            refusal = window_refusal(event, time.time())
            if refusal:
                self.limiter.failed(self.address, time.time())
        if refusal:
            await self.refuse(refusal)
            return None
        return event

    async def get(self, code: str) -> None:
        event = await self.joinable_event(code)
        if event is None:
            return
        user = self.current_user
        seat = await self.seat_of(event, user) if user else None
        await self.show(event, seat=seat)

    async def show(self, event: Event, seat=None, problem: str = "", name: str = "") -> None:
        user = self.current_user
        lab_account = user is not None and is_lab_account(user.name)
        html = await self.render_template(
            "join.html",
            event=event,
            refusal=None,
            opens=shown_time(event.start),
            ends=shown_time(event.end),
            lab_account=user.name if lab_account else "",
            seat=seat,
            problem=problem,
            display_name=name,
        )
        self.finish(html)

    async def seat_of(self, event: Event, user) -> workshop_store.Participant | None:
        seats = await asyncio.to_thread(workshop_store.participants, self.database, event.event_id)
        return next((p for p in seats if p.username == user.name), None)

    async def post(self, code: str) -> None:
        event = await self.joinable_event(code)
        if event is None:
            return
        current = self.current_user
        if current is not None and await self.seat_of(event, current):
            await self.go_to_materials(current, event)
            return
        as_account = current is not None and is_lab_account(current.name)
        if as_account and self.get_argument("as_account", ""):
            name = current.name
        else:
            as_account = False
            name = self.get_argument("display_name", "").strip()
            problem = display_name_problem(name)
            if problem:
                self.set_status(400)
                await self.show(event, problem=problem, name=name[:200])
                return
        try:
            seat = await asyncio.to_thread(
                workshop_store.take_seat,
                self.database,
                event.event_id,
                name,
                time.time(),
                current.name if as_account else "",
            )
        except SeatsTaken:
            await self.refuse(seats_refusal(event))
            return
        user = current if as_account else self.user_from_username(seat.username)
        add_to_group(self.db, user.orm_user, event.group)
        if not as_account:
            self.set_login_cookie(user)
        self.log.info("%s joined workshop %s as %r", user.name, event.event_id, name)
        await self.go_to_materials(user, event)

    async def go_to_materials(self, user, event: Event) -> None:
        """Start ``user``'s server with the event's choice unless it runs; then to the
        spawn-pending page, which sends them on to the materials link."""
        materials = url_path_join(user.url, pull_link(event, self.folder))
        spawner = user.spawner
        if spawner.ready:
            self.redirect(materials)
            return
        if not spawner.pending:
            options = {"environment": event.environment, "profile": event.profile}
            started = asyncio.ensure_future(self.spawn_single_user(user, options=options))
            await asyncio.wait([started], timeout=1)
            if started.done() and started.exception():
                message = spawn_error_message(started.exception())
                await self.refuse(
                    JoinRefusal("spawn-failed", f"Your server could not start: {message}", 500)
                )
                return
        pending = url_path_join(self.hub.base_url, "spawn-pending", quote(user.name, safe=""))
        self.redirect(pending + "?" + urlencode({"next": materials}))


def is_lab_account(username: str) -> bool:
    """Whether ``username`` may join as itself: not a temporary user (a workshop
    participant, or a gallery reviewer's seat, which belongs to no group)."""
    return not username.startswith(TEMPORARY_PREFIXES)


def spawn_error_message(error: BaseException) -> str:
    """What a refused start says (the spawner's 400/403 messages are written for users)."""
    if isinstance(error, web.HTTPError) and error.log_message:
        return error.log_message % error.args if error.args else error.log_message
    return str(error) or type(error).__name__


def join_hub_settings(site: Site) -> dict[str, Any]:
    """The join routes (workshops on only), and the login page's "Join a workshop" link."""
    if not site.workshops.enabled:
        return {}
    options = {
        "state_dir": str(site.hub.state_dir),
        "limiter": JoinRateLimiter(site.workshops.join_attempts_per_minute),
        "folder": site.workshops.materials_folder,
    }
    return {
        "JupyterHub": {
            "extra_handlers": [
                (r"/join", JoinCodeFormHandler, options),
                (r"/join/([^/]+)", JoinEventHandler, options),
            ],
            "template_vars": {"kh_workshop_join": True},
        }
    }
