"""Reviewer links: ``<prefix>review/<secret>``, read-only, without a hub account.

The secret (43 URL-safe characters, 256 bits) is looked up by its sha256; a link opens only
its own entry, while neither expired nor revoked (410 otherwise, saying which). Through an
anonymous link the author's name is left out of the page, the version records and the
served notebook's metadata. Routes at the end of the module.
"""

from __future__ import annotations

import time

from tornado import web

from . import store
from .access import ReviewerLink, check_link, shows_author
from .api_base import GalleryState, SafeHeaders
from .pages import EntryUrls, render_entry_page, write_page_error
from .reading import (
    comparison,
    entry_model,
    get_version,
    send_notebook,
    send_version_file,
    served_version,
    version_numbers,
)
from .seats_offer import seat_offer
from .store import EntryRow
from .threads_access import Actor
from .threads_work import page_threads
from .threads_xsrf import LinkXsrf

SECRET = r"([A-Za-z0-9_-]{43})"


class ReviewHandler(SafeHeaders):
    """Resolves ``<secret>`` into the entry it opens; no hub sign-in involved."""

    def initialize(self, state: GalleryState, prefix: str) -> None:
        self.state = state
        self.prefix = prefix

    async def opened(self, secret: str) -> tuple[EntryRow, ReviewerLink]:
        link = await self.state.call(store.link_by_secret, secret)
        if link is None:
            raise web.HTTPError(404, "no such reviewer link; check that it was copied whole")
        entry = await self.state.call(store.get_entry, link.entry_id)
        if entry is None:
            raise web.HTTPError(404, "the entry of this reviewer link is gone")
        check_link(link, entry.entry_id, time.time())
        return entry, link

    def base(self, secret: str) -> str:
        return f"{self.prefix}review/{secret}/"


class ReviewPageHandler(LinkXsrf, ReviewHandler):
    async def get(self, secret: str, number: str | None = None):
        entry, link = await self.opened(secret)
        base = self.base(secret)
        number = int(number or entry.latest)
        threads = await page_threads(
            self.state,
            entry,
            number,
            Actor(link=link),
            xsrf=self.xsrf_token,
            action=f"{base}versions/{number}/threads",
        )
        version = await get_version(self.state, entry, number)
        seat = await seat_offer(self.state, link, version, f"{base}v{number}/seat")
        await render_entry_page(
            self, self.state, entry, number,
            urls=EntryUrls(page=base, api=base, render=f"{base}render/"),
            show_author=shows_author(link), threads=threads, seat=seat,
        )  # fmt: skip

    def write_error(self, status_code: int, **kwargs) -> None:
        write_page_error(self, status_code, **kwargs)


class ReviewVersionHandler(ReviewHandler):
    async def get(self, secret: str, number: str):
        entry, link = await self.opened(secret)
        version = await get_version(self.state, entry, int(number))
        base = self.base(secret)
        self.send(await served_version(self.state, entry, version, base, shows_author(link)))


class ReviewEntryHandler(ReviewHandler):
    async def get(self, secret: str):
        entry, link = await self.opened(secret)
        self.send(entry_model(entry, self.base(secret), show_author=shows_author(link)))


class ReviewNotebookHandler(ReviewHandler):
    async def get(self, secret: str, number: str):
        entry, link = await self.opened(secret)
        await send_notebook(self, self.state, entry, int(number), show_author=shows_author(link))


class ReviewFileHandler(ReviewHandler):
    async def get(self, secret: str, number: str, name: str):
        entry, _ = await self.opened(secret)
        await send_version_file(self, self.state, entry, int(number), name)


class ReviewCompareHandler(ReviewHandler):
    async def get(self, secret: str):
        entry, link = await self.opened(secret)
        old, new = version_numbers(self)
        self.send(await comparison(self.state, entry, old, new, show_author=shows_author(link)))


def review_routes(prefix: str, state: GalleryState) -> list[tuple]:
    link = rf"{prefix}review/{SECRET}"
    args = {"state": state, "prefix": prefix}
    return [
        (rf"{link}/?", ReviewPageHandler, args),
        (rf"{link}/v(\d+)", ReviewPageHandler, args),
        (rf"{link}/entry", ReviewEntryHandler, args),
        (rf"{link}/versions/(\d+)/?", ReviewVersionHandler, args),
        (rf"{link}/versions/(\d+)/notebook", ReviewNotebookHandler, args),
        (rf"{link}/versions/(\d+)/files/(.+)", ReviewFileHandler, args),
        (rf"{link}/compare", ReviewCompareHandler, args),
    ]
