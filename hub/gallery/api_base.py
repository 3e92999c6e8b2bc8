"""What every gallery handler shares: the service's state, who asks, which entry they may
read, and the replies (JSON errors, safe download headers).

Handler methods declare who may call them with ``@requires(...)``:

- ``"user"``: any signed-in hub user (OAuth cookie, or an API token with access to the service);
- ``"read"``: a user who may read entry ``<id>`` (``access.can_read``); others get 404, as for
  an entry that does not exist;
- ``"manage"``: its author or an admin (``access.can_manage``); others who may read it get 403.

A temporary reviewer seat (``seats``) gets 403 from every method but the few declared
``@requires("read", seats=True)``: those that copy its one entry into its server.

Reviewer links (``review``) resolve their own access and never reach ``requires``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado import web

from kioskhub.hub.schema.gallery import SEAT_PREFIX
from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.catalog_db import Catalog
from kioskhub.image_builder.request_body import LimitedBody
from kioskhub.image_builder.service_auth import TokenOrCookie
from kioskhub.image_builder.user_gitlab_credentials import hub_user_model

from . import seats_store, store
from .access import LinkUnusable, Viewer, can_manage, can_read, check_link
from .pinning import NoRunningServer
from .publish_request import BadRequest
from .reexec_hub_api import REEXECUTION_USER
from .seats import SeatGrant

PAGE_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)
DOWNLOAD_POLICY = "default-src 'none'; sandbox"
REVIEW_SECRET = re.compile(r"(/review/)[A-Za-z0-9_-]+")
log = logging.getLogger("kioskhub.gallery")


def without_secrets(uri: str) -> str:
    """``uri`` with a reviewer link's secret left out, for logs."""
    return REVIEW_SECRET.sub(r"\1…", uri)


USER_ERRORS = (BadRequest, LinkUnusable, NoRunningServer, PermissionError, ValueError, LookupError)
"""Errors whose message is for the user: 400 unless they carry a ``status`` (403 for
PermissionError)."""


@dataclass
class GalleryState:
    """The site, the database, the version folders' root and the catalog (read-only)."""

    site: Site
    database: Path
    root: Path
    catalog: Catalog | None = None
    publishing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def call(self, function, *args):
        """Run a blocking store function on the database, in a thread."""
        return await asyncio.to_thread(function, self.database, *args)


SEAT_REFUSAL = (
    "a temporary reviewer seat only copies the entry of its reviewer link into its server: "
    "it does not publish, comment, list or read other entries. Read the entry through your "
    "reviewer link."
)


def requires(permission: str, *, seats: bool = False):
    """Declare who may call a handler method: 'user', 'read' or 'manage' (module doc);
    ``seats``: a temporary reviewer seat may call it too (only 'read' methods).

    'read' and 'manage' methods receive ``(viewer, entry, *rest)``; 'user' ones ``(viewer,)``.
    """

    def decorate(method):
        @functools.wraps(method)
        async def wrapper(self: GalleryHandler, *args):
            viewer = await self.viewer()
            if viewer.seat is not None and not (seats and permission == "read"):
                raise web.HTTPError(403, SEAT_REFUSAL)
            if permission == "user":
                return await method(self, viewer, *args)
            entry = await self.state.call(store.get_entry, int(args[0]))
            if entry is None or not can_read(entry.rules, viewer):
                raise web.HTTPError(404, "no gallery entry %s", args[0])
            if permission == "manage" and not can_manage(entry.rules, viewer):
                raise web.HTTPError(403, "only the author of this entry or an admin may do this")
            return await method(self, viewer, entry, *args[1:])

        wrapper.permission = permission
        wrapper.seats = seats
        return wrapper

    return decorate


class SafeHeaders(web.RequestHandler):
    """Headers every gallery reply carries; errors as JSON {"status", "message"}."""

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Content-Security-Policy", PAGE_POLICY)

    def _request_summary(self) -> str:
        return f"{self.request.method} {without_secrets(self.request.uri or '')}"

    def log_exception(self, typ, value, tb) -> None:
        """A user's error is one line; another is logged with its traceback. Neither logs a
        reviewer link's secret."""
        if isinstance(value, (*USER_ERRORS, web.HTTPError)):
            log.warning("%s: %s", self._request_summary(), value)
        else:
            log.error("Uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))

    def error_message(self, **kwargs) -> str:
        """What a person reads about the error in ``kwargs["exc_info"]``."""
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, USER_ERRORS):
            return str(error)
        if isinstance(error, web.HTTPError) and error.log_message:
            return error.log_message % error.args if error.args else error.log_message
        return self._reason

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": self.error_message(**kwargs)}))

    def _handle_request_exception(self, error: BaseException) -> None:
        if isinstance(error, USER_ERRORS):
            status = getattr(error, "status", None) or (
                403 if isinstance(error, PermissionError) else 400
            )
            error = web.HTTPError(status, "%s", str(error))
        super()._handle_request_exception(error)

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    async def send_file(self, name: str, chunks, content_type: str) -> None:
        """A download: attachment, never sniffed, never run (``chunks``: a blocking iterator)."""
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Security-Policy", DOWNLOAD_POLICY)
        self.set_header(
            "Content-Disposition", f"attachment; filename*=UTF-8''{quote(name.split('/')[-1])}"
        )
        while chunk := await asyncio.to_thread(next, chunks, b""):
            self.write(chunk)
            await self.flush()
        self.finish()


class GalleryHandler(TokenOrCookie, SafeHeaders):
    """A handler for signed-in hub users."""

    def initialize(self, state: GalleryState) -> None:
        self.state = state

    @property
    def prefix(self) -> str:
        return self.hub_auth.base_url

    async def viewer(self) -> Viewer:
        model = self.hub_user("only hub users use the gallery")
        if model["name"] == REEXECUTION_USER:
            # The notebooks it runs are untrusted: they may not publish, comment or read
            # under its name.
            raise web.HTTPError(403, "the re-execution server does not use the gallery")
        if model["name"].startswith(SEAT_PREFIX):
            return await self.seat_viewer(model["name"])
        user = await hub_user_model(self.hub_auth, model["name"])
        return Viewer(model["name"], frozenset(user.get("groups") or ()), bool(user.get("admin")))

    async def seat_viewer(self, name: str) -> Viewer:
        """A temporary seat, while it lasts and its link is in force (410 otherwise)."""
        now = time.time()
        seat = await self.state.call(seats_store.live_seat, name, now)
        if seat is None:
            raise web.HTTPError(410, "this temporary seat has ended")
        link = await self.state.call(store.link_by_id, seat.link_id)
        if link is None:
            raise web.HTTPError(410, "the reviewer link of this seat is gone")
        check_link(link, seat.entry_id, now)
        grant = SeatGrant(seat.entry_id, seat.link_id, link.anonymous)
        return Viewer(name, frozenset(), False, seat=grant)


def body_limit(site: Site) -> int:
    """The largest request body: base64 grows files by a third, and the notebook's JSON
    is escaped once more inside the body's."""
    gallery = site.gallery
    return 4 * gallery.max_version_bytes // 3 + 2 * gallery.max_notebook_bytes + 2**20


class PublishingHandler(GalleryHandler, LimitedBody):
    """A handler whose body may carry a whole version, refused over the site's limits
    before it is read."""

    def initialize(self, state: GalleryState) -> None:
        super().initialize(state)
        self.body_limit = body_limit(state.site)

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body_bytes or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise web.HTTPError(400, f"the body is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return data
