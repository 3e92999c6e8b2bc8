"""Review threads over HTTP, for signed-in users (``api/entries/<id>/versions/<n>/threads``)
and reviewer links (``review/<secret>/versions/<n>/threads``); routes at the end.

Each POST takes JSON and answers JSON, or takes the entry page's form (``application/x-www-
form-urlencoded`` with ``_xsrf``) and sends the browser back to the page (303), showing an
error as a page. Signed-in readers are checked by ``api_base.requires("read")`` (404 for
others), link holders by ``review.ReviewHandler.opened`` (410 once the link is unusable);
what each may do then is ``threads_access``'s rule.
"""

from __future__ import annotations

import json

from tornado import web

from .access import Viewer, shows_author
from .api_base import GalleryHandler, GalleryState, requires
from .pages import write_page_error
from .review import SECRET, ReviewHandler
from .store import EntryRow
from .threads_access import Actor
from .threads_work import comment, open_thread, resolve, threads_of_version
from .threads_xsrf import LinkXsrf, is_json

MAX_BODY_BYTES = 65536


class ThreadReplies(web.RequestHandler):
    """Reads a JSON or form body; answers JSON, or sends a form's browser back to the page."""

    def fields(self) -> dict:
        if len(self.request.body) > MAX_BODY_BYTES:
            raise web.HTTPError(413, "the request body is larger than %d bytes", MAX_BODY_BYTES)
        if not is_json(self.request):
            return {name: self.get_body_argument(name, "") for name in ("cell_id", "text")}
        try:
            data = json.loads(self.request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise web.HTTPError(400, f"the body is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return data

    def is_form(self) -> bool:
        return self.request.method == "POST" and not is_json(self.request)

    def page_url(self, number: int) -> str:
        raise NotImplementedError

    def done(self, number: int, thread_id: int, status: int = 200) -> None:
        if self.is_form():
            self.redirect(f"{self.page_url(number)}#thread-{thread_id}", status=303)
        else:
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"id": thread_id}))

    def write_error(self, status_code: int, **kwargs) -> None:
        if self.is_form():
            write_page_error(self, status_code, **kwargs)
        else:
            super().write_error(status_code, **kwargs)


class UserThreads(ThreadReplies, GalleryHandler):
    """Signed-in readers of an entry."""

    def page_url(self, number: int) -> str:
        return f"{self.prefix}entries/{self.path_args[0]}/v{number}"


class UserThreadsHandler(UserThreads):
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow, number: str):
        self.send(await threads_of_version(self.state, entry, int(number), shows_author=True))

    @requires("read")
    async def post(self, viewer: Viewer, entry: EntryRow, number: str):
        thread_id = await open_thread(
            self.state, entry, int(number), Actor(viewer=viewer), self.fields()
        )
        self.done(int(number), thread_id, 201)


class UserCommentHandler(UserThreads):
    @requires("read")
    async def post(self, viewer: Viewer, entry: EntryRow, number: str, thread: str):
        actor = Actor(viewer=viewer)
        await comment(self.state, entry, int(number), int(thread), actor, self.fields())
        self.done(int(number), int(thread), 201)


class UserResolveHandler(UserThreads):
    @requires("read")
    async def post(self, viewer: Viewer, entry: EntryRow, number: str, thread: str, action: str):
        actor = Actor(viewer=viewer)
        await resolve(self.state, entry, int(number), int(thread), actor, action == "resolve")
        self.done(int(number), int(thread))


class LinkThreads(ThreadReplies, LinkXsrf, ReviewHandler):
    """Holders of a reviewer link; the first path argument is its secret."""

    def page_url(self, number: int) -> str:
        return f"{self.link_path()}/v{number}"


class LinkThreadsHandler(LinkThreads):
    async def get(self, secret: str, number: str):
        entry, link = await self.opened(secret)
        shown = shows_author(link)
        self.send(await threads_of_version(self.state, entry, int(number), shows_author=shown))

    async def post(self, secret: str, number: str):
        entry, link = await self.opened(secret)
        actor = Actor(link=link)
        thread_id = await open_thread(self.state, entry, int(number), actor, self.fields())
        self.done(int(number), thread_id, 201)


class LinkCommentHandler(LinkThreads):
    async def post(self, secret: str, number: str, thread: str):
        entry, link = await self.opened(secret)
        actor = Actor(link=link)
        await comment(self.state, entry, int(number), int(thread), actor, self.fields())
        self.done(int(number), int(thread), 201)


class LinkResolveHandler(LinkThreads):
    async def post(self, secret: str, number: str, thread: str, action: str):
        entry, link = await self.opened(secret)
        actor = Actor(link=link)
        await resolve(self.state, entry, int(number), int(thread), actor, action == "resolve")
        self.done(int(number), int(thread))


def thread_routes(prefix: str, state: GalleryState) -> list[tuple]:
    """The threads' routes, for signed-in users and for reviewer links."""
    routes = []
    for base, handlers, args in [
        (rf"{prefix}api/entries/(\d+)", (UserThreadsHandler, UserCommentHandler,
                                         UserResolveHandler), {"state": state}),
        (rf"{prefix}review/{SECRET}", (LinkThreadsHandler, LinkCommentHandler,
                                       LinkResolveHandler), {"state": state, "prefix": prefix}),
    ]:  # fmt: skip
        threads = rf"{base}/versions/(\d+)/threads"
        listing, commenting, resolving = handlers
        routes += [
            (rf"{threads}/?", listing, args),
            (rf"{threads}/(\d+)/comments", commenting, args),
            (rf"{threads}/(\d+)/(resolve|reopen)", resolving, args),
        ]
    return routes
