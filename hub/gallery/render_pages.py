"""Serving a version's rendered notebook into the entry page's ``<iframe sandbox>``.

- ``<prefix>render/<entry>/v<n>``: for signed-in users who may read the entry (404 else);
- ``<prefix>review/<secret>/render/v<n>``: for holders of a reviewer link in force.

A render (``render.render_notebook``) keeps no metadata of the notebook, so it is the same
through an anonymous link. It is made in a worker thread, at most ``RENDERING_AT_ONCE`` at
a time (link holders cannot fill the CPUs), kept for the last ``CACHED_RENDERS`` versions
shown, and served with ``render.RENDER_HEADERS``: no script at all, a sandboxed document.
A notebook that cannot be rendered gets a short page saying why, in the same frame.
"""

from __future__ import annotations

import asyncio
import html
from collections import OrderedDict

from tornado import web

from .access import Viewer
from .api_base import GalleryState, SafeHeaders, requires
from .pages import PageHandler
from .reading import get_version, notebook_of
from .render import RENDER_HEADERS, NotebookUnreadable, RenderLimits, render_notebook
from .review import SECRET, ReviewHandler
from .store import EntryRow

RENDERING_AT_ONCE = 2
CACHED_RENDERS = 32


class RenderCache:
    """The last renders shown, by (entry, version); versions never change once published."""

    def __init__(self, size: int = CACHED_RENDERS) -> None:
        self.size = size
        self.pages: OrderedDict[tuple[int, int], str] = OrderedDict()
        self.rendering = asyncio.Semaphore(RENDERING_AT_ONCE)

    def get(self, key: tuple[int, int]) -> str | None:
        page = self.pages.get(key)
        if page is not None:
            self.pages.move_to_end(key)
        return page

    def put(self, key: tuple[int, int], page: str) -> None:
        self.pages[key] = page
        self.pages.move_to_end(key)
        while len(self.pages) > self.size:
            self.pages.popitem(last=False)


def unreadable_page(message: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Not shown</title></head>'
        f'<body><p id="kh-render-unreadable">This notebook cannot be shown: '
        f"{html.escape(message)}</p></body></html>"
    )


async def send_render(
    handler: SafeHeaders, state: GalleryState, cache: RenderCache, entry: EntryRow, number: int
) -> None:
    await get_version(state, entry, number)
    key = (entry.entry_id, number)
    page = cache.get(key)
    if page is None:
        data = await notebook_of(state, entry, number, show_author=False)
        limits = RenderLimits(max_notebook_bytes=state.site.gallery.max_notebook_bytes)
        async with cache.rendering:
            try:
                rendered = await asyncio.to_thread(render_notebook, data, limits=limits)
                page = rendered.html
            except NotebookUnreadable as error:
                page = unreadable_page(str(error))
        cache.put(key, page)
    for name, value in RENDER_HEADERS.items():
        handler.set_header(name, value)
    handler.finish(page)


class RenderHandler(PageHandler):
    def initialize(self, state: GalleryState, cache: RenderCache) -> None:
        super().initialize(state)
        self.cache = cache

    @web.authenticated
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow, number: str):
        await send_render(self, self.state, self.cache, entry, int(number))


class ReviewRenderHandler(ReviewHandler):
    def initialize(self, state: GalleryState, prefix: str, cache: RenderCache) -> None:
        super().initialize(state, prefix)
        self.cache = cache

    async def get(self, secret: str, number: str):
        entry, _ = await self.opened(secret)
        await send_render(self, self.state, self.cache, entry, int(number))


def render_routes(prefix: str, state: GalleryState) -> list[tuple]:
    cache = RenderCache()
    return [
        (rf"{prefix}render/(\d+)/v(\d+)", RenderHandler, {"state": state, "cache": cache}),
        (
            rf"{prefix}review/{SECRET}/render/v(\d+)",
            ReviewRenderHandler,
            {"state": state, "prefix": prefix, "cache": cache},
        ),
    ]
