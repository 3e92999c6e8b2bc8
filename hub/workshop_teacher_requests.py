"""What every hub API handler of a teacher's action on an event checks first.

The caller must be the event's teacher or an admin (``workshop_access.may_manage``), and
act with the authority of a signed-in person: their browser session or a token that may
start and stop their own servers (``servers!user=<them>``). A server's own API token holds
only ``users:activity`` and ``access:servers``, so the code running in a teacher's
notebook server cannot act on a class through it.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from jupyterhub.scopes import has_scope
from tornado import web

from kioskhub.hub.schema.site import Site

from . import workshop_store
from .workshop_access import may_manage

EVENT_ID_PATTERN = r"[a-z0-9]{1,32}"
TEACHER_SCOPE = "servers"
"""Held (on their own name) by a person's session and ordinary tokens, not by a server's."""


def store_path(site: Site) -> Path:
    return workshop_store.database(site.hub.state_dir)


def holds_own_scope(handler, scope: str) -> bool:
    """Whether the request's credentials hold ``scope`` on the caller's own name."""
    user = handler.current_user
    if user is None or getattr(user, "kind", "user") != "user":
        return False
    return has_scope(f"{scope}!user={user.name}", handler.parsed_scopes, db=handler.db)


async def managed_event(handler, site: Site, event_id: str) -> workshop_store.Event:
    """The event ``event_id`` if the caller may act on it; else 403 or 404 with a reason."""
    user = handler.current_user
    if user is None:
        raise web.HTTPError(403, "Missing or invalid credentials.")
    if not site.workshops.enabled:
        raise web.HTTPError(404, "Workshops are not enabled on this hub (workshops.enabled).")
    if not re.fullmatch(EVENT_ID_PATTERN, event_id):
        raise web.HTTPError(404, f"There is no event {event_id!r}.")
    event = await asyncio.to_thread(workshop_store.get_event, store_path(site), event_id)
    if event is None:
        raise web.HTTPError(404, f"There is no event {event_id!r}.")
    if not may_manage(event, user.name, bool(getattr(user, "admin", False))):
        raise web.HTTPError(
            403, f"Only the event's teacher or an admin may do this; you are {user.name!r}."
        )
    if not holds_own_scope(handler, TEACHER_SCOPE):
        raise web.HTTPError(
            403,
            "These credentials cannot act for a teacher (a server's own token cannot); "
            "sign in, or use a token with the scope 'servers'.",
        )
    return event
