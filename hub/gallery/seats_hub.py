"""The hub's half of temporary reviewer seats (``seats``): JupyterHub handlers in the hub.

- ``GET /hub/gallery-seat/<ticket>``: what the seat opens (the entry's title and version,
  how long it lasts), and a button; nothing is used up by looking.
- ``POST /hub/gallery-seat/<ticket>`` (the hub's ``_xsrf``): redeems the ticket
  (``seats_store.redeem``: single use, not expired, its link in force and still for its
  entry, within ``per_link`` and ``site_limit``), makes the hub user ``rv-<hex>``, signs
  the browser in as it, starts its server with the version's pinned environment and
  profile, and sends it through the spawn-pending page to the server's fetch endpoint
  (``extensions.gallery_fetch``), which copies the version into ``~/gallery/<entry>/v<N>/``
  as the seat and opens it in JupyterLab. A browser signed in as a lab account is told to
  use its own server instead; nothing is made for it.
- ``DELETE /hub/api/gallery/seats/<name>``: only for a token holding
  ``custom:gallery:seats`` (the gallery's); removes a seat past its end, and nothing else:
  the name must be a seat's (``seats.SEAT_NAME``) and the gallery's database must say it
  ended. Its server stops, then ``workshop_expiry.remove_temporary`` deletes the hub user,
  empties and removes the home as its owner (no link followed) and removes the ``kh-``
  system account, as for workshop participants.

A refusal is a page (or JSON) that says why; nothing is made.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import maybe_future, url_path_join
from tornado import web

from kioskhub.hub.schema.site import Site
from kioskhub.hub.workshop_expiry import TemporaryRemoval, remove_temporary
from kioskhub.hub.workshop_join import spawn_error_message
from kioskhub.spawner.local_accounts import account_name

from . import seats_store, store
from .reproduce import fetch_url
from .seats import TICKET, SeatRefused, is_seat_name

SEATS_SCOPE = "custom:gallery:seats"
PAGE = "gallery_seat.html"


class SeatPageHandler(BaseHandler):
    """``/hub/gallery-seat/<ticket>``: the seat's page, and making the seat."""

    def initialize(self, site: Site) -> None:
        self.site = site
        self.database = store.database(Path(site.hub.state_dir))

    def get_content_type(self) -> str:
        return "text/html; charset=UTF-8"

    async def show(self, status: int = 200, **values) -> None:
        self.set_status(status)
        values = {"ticket": None, "problem": "", "hours": 0, **values}
        self.finish(await self.render_template(PAGE, **values))

    def seats_off(self) -> bool:
        return not self.site.gallery.reviewer_seats.enabled

    async def get(self, secret: str) -> None:
        if self.seats_off():
            return await self.show(404, problem=SEATS_OFF)
        try:
            ticket = await asyncio.to_thread(
                seats_store.ticket_for_page, self.database, secret, time.time()
            )
        except SeatRefused as refusal:
            return await self.show(refusal.status, problem=str(refusal))
        hours = self.site.gallery.reviewer_seats.hours
        await self.show(ticket=ticket, hours=hours, lab_account=self.lab_account())

    def lab_account(self) -> str:
        """The signed-in lab account's name ("" for none, or for a seat)."""
        user = self.current_user
        return user.name if user is not None and not is_seat_name(user.name) else ""

    async def post(self, secret: str) -> None:
        if self.seats_off():
            return await self.show(404, problem=SEATS_OFF)
        if self.lab_account():
            return await self.show(
                409,
                problem=f"You are signed in as {self.lab_account()}: temporary seats are for "
                "reviewers without an account. Ask the author to share the entry with you "
                "and open it in your own server, or sign out first.",
            )
        settings = self.site.gallery.reviewer_seats
        try:
            seat = await asyncio.to_thread(
                seats_store.redeem, self.database, secret, time.time(), settings
            )
        except SeatRefused as refusal:
            return await self.show(refusal.status, problem=str(refusal))
        user = self.user_from_username(seat.username)
        self.set_login_cookie(user)
        self.log.info(
            "Gallery seat %s made for entry %s v%s (link %s), until %s",
            seat.username, seat.entry_id, seat.number, seat.link_id, time.ctime(seat.expires),
        )  # fmt: skip
        await self.start_seat(user, seat)

    async def start_seat(self, user, seat: seats_store.Seat) -> None:
        """Start the seat's server with the pinned choice, then on to the copy."""
        fetch = fetch_url(self.base_url, user.name, seat.entry_id, seat.number)
        options = {"environment": seat.environment}
        if seat.profile:
            options["profile"] = seat.profile
        started = asyncio.ensure_future(self.spawn_single_user(user, options=options))
        await asyncio.wait([started], timeout=1)
        if started.done() and started.exception():
            message = spawn_error_message(started.exception())
            return await self.show(500, problem=f"Your seat's server could not start: {message}")
        pending = url_path_join(self.hub.base_url, "spawn-pending", quote(user.name, safe=""))
        self.redirect(pending + "?" + urlencode({"next": fetch}))


SEATS_OFF = (
    "This site offers no temporary seats: ask the author for a lab account, or download the "
    "RO-Crate from the reviewer link's page."
)


class HubSeatUsers:
    """``workshop_expiry.HubUsers`` inside the hub: stop a seat's server, delete its user."""

    def __init__(self, handler: BaseHandler):
        self.handler = handler

    async def stop_server(self, username: str) -> None:
        user = self.handler.find_user(username)
        if user is None:
            return
        spawner = user.spawner
        if spawner.pending and spawner.pending != "stop":
            raise RuntimeError(f"its server is {spawner.pending}ing; tried again next round")
        if spawner.active or spawner.pending == "stop":
            if not spawner.pending:
                await self.handler.stop_single_user(user, "")
            # JupyterHub's stop goes on in the background past its slow_stop_timeout.
            stopping = getattr(spawner, "_stop_future", None)
            if stopping is not None:
                await stopping

    async def delete_user(self, username: str) -> None:
        await self.stop_server(username)
        user = self.handler.find_user(username)
        if user is None:
            return
        await maybe_future(self.handler.authenticator.delete_user(user))
        await user.delete_spawners()
        self.handler.users.delete(user)

    async def leave_group(self, group: str, usernames: list[str]) -> None:
        raise NotImplementedError("seats belong to no group")


class SeatRemovalHandler(APIHandler):
    """``DELETE /hub/api/gallery/seats/<name>``: remove a seat past its end."""

    def initialize(self, site: Site) -> None:
        self.site = site
        self.database = store.database(Path(site.hub.state_dir))

    async def delete(self, name: str) -> None:
        if SEATS_SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, "only the gallery removes temporary seats")
        if not is_seat_name(name):
            raise web.HTTPError(400, "%r is not a temporary seat's name", name)
        due = await asyncio.to_thread(seats_store.is_due, self.database, name, time.time())
        if not due:
            raise web.HTTPError(409, "the seat %s has not ended", name)
        removal = TemporaryRemoval(name, account_name(self.site, name), self.site.home.root / name)
        problems = await remove_temporary(
            self.site, HubSeatUsers(self), removal, who="Gallery seat"
        )
        if problems:
            raise web.HTTPError(500, "%s", "; ".join(problems))
        self.log.info("Gallery seat %s removed: server, hub user, home, account", name)
        self.finish(json.dumps({"removed": name}))


def seat_hub_routes(site: Site) -> list[tuple[str, type, dict]]:
    return [
        (rf"/gallery-seat/{TICKET}", SeatPageHandler, {"site": site}),
        (r"/api/gallery/seats/([^/]+)", SeatRemovalHandler, {"site": site}),
    ]
