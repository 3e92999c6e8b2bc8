"""The gallery's pages: the list with search (``<prefix>``), an entry at its latest or a
given version (``<prefix>entries/<id>``, ``…/v<n>``), the same for reviewer links
(``review``), each with its re-execution badges (``reexec_store``). Jinja templates with
autoescape: every string a user wrote arrives as text.

A version's notebook is shown in ``<iframe sandbox>`` from ``…/render/…`` (the render
routes are added with the renderer, not here); the page itself runs no script.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from . import reexec_store, store
from .access import Viewer, can_manage, can_read
from .api_base import GalleryHandler, GalleryState, SafeHeaders, requires
from .reading import get_version
from .reexec_store import reexecution_model
from .reproduce_build import reproduce_panel
from .reproduce_open import rebuild_panel
from .search import page_of, query_from
from .seats_offer import SeatOffer
from .store import EntryRow
from .threads_access import Actor
from .threads_work import page_threads

TEMPLATES = Path(__file__).resolve().parent / "templates"
templates = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)


def when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


templates.filters["when"] = when


@dataclass(frozen=True)
class EntryUrls:
    """Where an entry's page links: its versions' pages, downloads and renders."""

    page: str
    api: str
    render: str


def render_message(status: int, message: str) -> str:
    return templates.get_template("gallery_message.html").render(status=status, message=message)


async def render_entry_page(
    handler: SafeHeaders,
    state: GalleryState,
    entry: EntryRow,
    number: int,
    *,
    urls: EntryUrls,
    show_author: bool,
    threads: dict | None = None,
    can_reexecute: bool = False,
    open_action: str | None = None,
    seat: SeatOffer | None = None,
    rebuild: tuple[Viewer, int] | None = None,
) -> None:
    """Version ``number`` of ``entry``: texts, pinning, files, versions, the render frame,
    its review threads (``threads_work.page_threads``) and, for signed-in readers
    (``open_action``: where the "Open in my server" form posts), reproducing it; a
    reviewer link's page offers a temporary seat (``seat``, ``seats_offer``) or says why it
    cannot be opened here. The re-execution report, and
    the form that asks for one when ``can_reexecute`` (its author or an admin). ``rebuild``
    (the reader and a pinned build's id): the page follows that rebuild of the pinned
    environment, refreshing itself, and opens the reader's server in it once ready."""
    version = await get_version(state, entry, number)
    versions = await state.call(store.versions, entry.entry_id)
    run = await state.call(reexec_store.get, entry.entry_id, number)
    badges = await state.call(
        reexec_store.badges, [(entry.entry_id, v["number"]) for v in versions]
    )
    reproduce = None
    if open_action is not None:
        reproduce = await reproduce_panel(state, version, open_action)
        if rebuild is not None:
            reader, build_id = rebuild
            reproduce["rebuild"] = await rebuild_panel(
                state, handler.hub_auth, reader, entry.entry_id, version, build_id
            )
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    handler.finish(
        templates.get_template("gallery_entry.html").render(
            entry=entry,
            version=version,
            versions=versions,
            urls=urls,
            show_author=show_author,
            threads=threads,
            reexecution=reexecution_model(run),
            can_reexecute=can_reexecute,
            badges={number: badge for (_, number), badge in badges.items()},
            reproduce=reproduce,
            seat=seat,
            xsrf=getattr(handler, "xsrf_token", b"").decode(),
        )
    )


def write_page_error(handler: SafeHeaders, status_code: int, **kwargs) -> None:
    """An error as a page: what went wrong, nothing of the entry."""
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    handler.finish(render_message(status_code, handler.error_message(**kwargs)))


class PageHandler(GalleryHandler):
    """A page for signed-in users: HubOAuth sends others to the hub's login."""

    get_login_url = HubOAuthenticated.get_login_url

    def write_error(self, status_code: int, **kwargs) -> None:
        write_page_error(self, status_code, **kwargs)


class ListPageHandler(PageHandler):
    @web.authenticated
    @requires("user")
    async def get(self, viewer: Viewer):
        arguments = {name: self.get_argument(name, "") for name in self.request.arguments}
        query = query_from(arguments)
        everything = await self.state.call(store.all_entries)
        entries, total = page_of([e for e in everything if can_read(e.rules, viewer)], query)
        badges = await self.state.call(
            reexec_store.badges, [(entry.entry_id, entry.latest) for entry in entries]
        )
        pages = max(1, -(-total // query.per_page))
        shown = {k: v for k, v in vars(query).items() if v and k not in ("page", "per_page")}
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            templates.get_template("gallery_list.html").render(
                prefix=self.prefix,
                viewer=viewer,
                entries=entries,
                badges={entry_id: badge for (entry_id, _), badge in badges.items()},
                query=query,
                total=total,
                pages=pages,
                previous=urlencode(shown | {"page": query.page - 1}) if query.page > 1 else None,
                next=urlencode(shown | {"page": query.page + 1}) if query.page < pages else None,
            )
        )


class EntryPageHandler(PageHandler):
    @web.authenticated
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow, number: str | None = None):
        urls = EntryUrls(
            page=f"{self.prefix}entries/{entry.entry_id}/",
            api=f"{self.prefix}api/entries/{entry.entry_id}/",
            render=f"{self.prefix}render/{entry.entry_id}/",
        )
        number = int(number or entry.latest)
        rebuild = self.get_argument("rebuild", "")
        threads = await page_threads(
            self.state, entry, number, Actor(viewer=viewer), xsrf=self.xsrf_token,
            action=f"{urls.api}versions/{number}/threads",
        )  # fmt: skip
        await render_entry_page(
            self, self.state, entry, number, urls=urls, show_author=True, threads=threads,
            can_reexecute=can_manage(entry.rules, viewer),
            open_action=f"{urls.page}v{number}/open",
            rebuild=(viewer, int(rebuild)) if rebuild.isdigit() else None,
        )  # fmt: skip


def page_routes(prefix: str, state: GalleryState) -> list[tuple]:
    args = {"state": state}
    return [
        (rf"{prefix}?", ListPageHandler, args),
        (rf"{prefix}entries/(\d+)/?", EntryPageHandler, args),
        (rf"{prefix}entries/(\d+)/v(\d+)", EntryPageHandler, args),
        (rf"{prefix}oauth_callback", HubOAuthCallbackHandler),
    ]
