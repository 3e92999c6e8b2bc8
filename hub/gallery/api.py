"""The gallery's REST API for signed-in users; who may call each method is declared on it
(``api_base.requires``). The routing table is at the end of the module.

A reviewer link's routes are in ``review``, the pages in ``pages``.
"""

from __future__ import annotations

import secrets
import time

from tornado import web

from . import store
from .access import Viewer, can_read, check_visibility
from .api_base import GalleryHandler, PublishingHandler, requires
from .publishing import parse, pinning_of_author, publish_entry, publish_version
from .reading import (
    comparison,
    entry_model,
    get_version,
    send_notebook,
    send_version_file,
    served_version,
    version_model,
    version_numbers,
)
from .search import page_of, query_from
from .store import EntryRow

DAY = 86400.0


class EntryReplies(PublishingHandler):
    """The base of the API's handlers: an entry as JSON, with its links."""

    def entry_dict(self, entry: EntryRow) -> dict:
        base = f"{self.prefix}api/entries/{entry.entry_id}/"
        return entry_model(entry, base, show_author=True) | {
            "links": {"self": base, "page": f"{self.prefix}entries/{entry.entry_id}"}
        }


class EntriesHandler(EntryReplies):
    @requires("user")
    async def get(self, viewer: Viewer):
        query = query_from({name: self.get_argument(name, "") for name in self.request.arguments})
        everything = await self.state.call(store.all_entries)
        readable = [entry for entry in everything if can_read(entry.rules, viewer)]
        entries, total = page_of(readable, query)
        self.send(
            {
                "entries": [self.entry_dict(entry) for entry in entries],
                "total": total,
                "page": query.page,
                "per_page": query.per_page,
            }
        )

    @requires("user")
    async def post(self, viewer: Viewer):
        body = self.body()
        publication = parse(self.state, body)
        check_visibility(viewer, publication.visibility or "draft")
        pinning = await pinning_of_author(self.state, self.hub_auth, viewer, server_of(body))
        entry_id = await publish_entry(self.state, viewer, publication, pinning)
        entry = await self.state.call(store.get_entry, entry_id)
        self.send(self.entry_dict(entry), 201)


def server_of(body: dict) -> str:
    """The author's server to take the pinning from: ``server`` in the body, else the default."""
    server = body.get("server") or ""
    if not isinstance(server, str) or len(server) > 255:
        raise ValueError("'server' must be the name of one of your servers")
    return server


class EntryHandler(EntryReplies):
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow):
        versions = await self.state.call(store.versions, entry.entry_id)
        base = f"{self.prefix}api/entries/{entry.entry_id}/"
        self.send(
            self.entry_dict(entry)
            | {"versions": [version_model(v, base, show_author=True) for v in versions]}
        )


class VisibilityHandler(EntryReplies):
    @requires("manage")
    async def put(self, viewer: Viewer, entry: EntryRow):
        visibility = check_visibility(viewer, str(self.body().get("visibility") or ""))
        await self.state.call(store.set_visibility, entry.entry_id, visibility)
        self.send(self.entry_dict(await self.state.call(store.get_entry, entry.entry_id)))


class VersionsHandler(EntryReplies):
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow):
        versions = await self.state.call(store.versions, entry.entry_id)
        base = f"{self.prefix}api/entries/{entry.entry_id}/"
        self.send({"versions": [version_model(v, base, show_author=True) for v in versions]})

    @requires("manage")
    async def post(self, viewer: Viewer, entry: EntryRow):
        body = self.body()
        publication = parse(self.state, body)
        pinning = await pinning_of_author(self.state, self.hub_auth, viewer, server_of(body))
        number = await publish_version(self.state, entry.entry_id, viewer, publication, pinning)
        version = await get_version(self.state, entry, number)
        base = f"{self.prefix}api/entries/{entry.entry_id}/"
        self.send(version_model(version, base, show_author=True), 201)


class VersionHandler(GalleryHandler):
    @requires("read", seats=True)
    async def get(self, viewer: Viewer, entry: EntryRow, number: str):
        version = await get_version(self.state, entry, int(number))
        base = f"{self.prefix}api/entries/{entry.entry_id}/"
        self.send(await served_version(self.state, entry, version, base, viewer.shows_author))


class NotebookHandler(GalleryHandler):
    @requires("read", seats=True)
    async def get(self, viewer: Viewer, entry: EntryRow, number: str):
        await send_notebook(self, self.state, entry, int(number), show_author=viewer.shows_author)


class FileHandler(GalleryHandler):
    @requires("read", seats=True)
    async def get(self, viewer: Viewer, entry: EntryRow, number: str, name: str):
        await send_version_file(self, self.state, entry, int(number), name)


class CompareHandler(GalleryHandler):
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow):
        old, new = version_numbers(self)
        self.send(await comparison(self.state, entry, old, new, show_author=True))


class LinksHandler(EntryReplies):
    @requires("manage")
    async def get(self, viewer: Viewer, entry: EntryRow):
        self.send({"links": await self.state.call(store.links, entry.entry_id)})

    @requires("manage")
    async def post(self, viewer: Viewer, entry: EntryRow):
        body = self.body()
        gallery = self.state.site.gallery
        expires = link_expiry(body, gallery.reviewer_link_max_days, time.time())
        anonymous = body.get("anonymous", False)
        if not isinstance(anonymous, bool):
            raise ValueError("'anonymous' must be true or false")
        if anonymous and not gallery.anonymous_review:
            raise PermissionError(
                "this site does not allow anonymous review (gallery.anonymous_review); "
                "make a link that shows your name"
            )
        secret = secrets.token_urlsafe(32)
        link_id = await self.state.call(
            store.create_link, entry.entry_id, secret, viewer.name, expires, anonymous
        )
        self.send(
            {
                "id": link_id,
                "url": f"{self.prefix}review/{secret}",
                "expires": expires,
                "anonymous": anonymous,
            },
            201,
        )


def link_expiry(body: dict, max_days: int, now: float) -> float:
    """When a new link expires: ``expires`` (seconds since 1970) or ``days`` from now."""
    expires, days = body.get("expires"), body.get("days")
    if expires is None:
        if not isinstance(days, int | float) or isinstance(days, bool) or days <= 0:
            raise ValueError("give the link's validity: 'days' (a number) or 'expires'")
        expires = now + days * DAY
    if not isinstance(expires, int | float) or isinstance(expires, bool) or expires <= now:
        raise ValueError("'expires' must be a time in the future, in seconds since 1970")
    if expires > now + max_days * DAY:
        raise ValueError(
            f"a reviewer link lasts at most {max_days} days on this site "
            "(gallery.reviewer_link_max_days)"
        )
    return float(expires)


class LinkHandler(EntryReplies):
    @requires("manage")
    async def delete(self, viewer: Viewer, entry: EntryRow, link_id: str):
        if not await self.state.call(store.revoke_link, entry.entry_id, int(link_id)):
            raise web.HTTPError(404, "entry %s has no link %s in force", entry.entry_id, link_id)
        self.set_status(204)
        self.finish()


def api_routes(prefix: str, args: dict) -> list[tuple]:
    """The routing table of the API, below the service's URL prefix."""
    entry = rf"{prefix}api/entries/(\d+)"
    version = rf"{entry}/versions/(\d+)"
    return [
        (rf"{prefix}api/entries/?", EntriesHandler, args),
        (rf"{entry}/?", EntryHandler, args),
        (rf"{entry}/visibility", VisibilityHandler, args),
        (rf"{entry}/versions/?", VersionsHandler, args),
        (rf"{version}/?", VersionHandler, args),
        (rf"{version}/notebook", NotebookHandler, args),
        (rf"{version}/files/(.+)", FileHandler, args),
        (rf"{entry}/compare", CompareHandler, args),
        (rf"{entry}/links/?", LinksHandler, args),
        (rf"{entry}/links/(\d+)", LinkHandler, args),
    ]
