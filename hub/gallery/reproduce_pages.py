"""The "Open in my server" button of a version's page, and what pressing it does.

``reproduce_panel`` tells the page whether the pinned environment still launches the same
build (``reproduce.build_check``). ``OpenHandler`` (``POST entries/<id>/v<n>/open``, the
page's form with its ``_xsrf``) checks that the reader may read the entry (404 otherwise),
then sends the browser, as the reader, to the hub's spawn URL with the pinned environment
and profile, or straight to their running server when it already runs that environment;
either way ``next`` is their server's fetch endpoint, which copies the files as the reader.
A server running another environment is left running, and the reader is told so. The
service only reads servers (``read:servers``); it never starts or stops one.
"""

from __future__ import annotations

from tornado import web

from kioskhub.image_builder.user_gitlab_credentials import hub_user_model

from .access import Viewer
from .api_base import GalleryState, requires
from .pages import PageHandler, templates
from .pinning import environment_name
from .reading import get_version
from .reproduce import BUILDER_PAGE, BUSY, OTHER, REUSE, fetch_url, server_decision, spawn_url
from .reproduce_build import current_build, hub_base_url
from .store import EntryRow


class OpenHandler(PageHandler):
    """``POST entries/<id>/v<n>/open``: start or reuse the reader's server for a version."""

    @web.authenticated
    @requires("read")
    async def post(self, viewer: Viewer, entry: EntryRow, number: str):
        version = await get_version(self.state, entry, int(number))
        pinned = version["pinning"]
        environment = pinned.get("environment") or ""
        back = f"{self.prefix}entries/{entry.entry_id}/v{version['number']}"
        check = await current_build(self.state, pinned)
        base = hub_base_url()
        if not check.can_open:
            builder = base + BUILDER_PAGE if check.builder_link else None
            return self.outcome(409, check.message, back, builder=builder)
        user = await hub_user_model(self.hub_auth, viewer.name)
        server = (user.get("servers") or {}).get("")
        running = None
        if server:
            running, _ = environment_name(
                self.state.site, server.get("user_options") or {}, viewer.groups
            )
        decision = server_decision(server, running, environment)
        if decision.action == OTHER:
            return self.outcome(409, decision.message, back, home=f"{base}hub/home")
        if decision.action == BUSY:
            return self.outcome(409, decision.message, back)
        fetch = fetch_url(base, viewer.name, entry.entry_id, version["number"])
        if decision.action == REUSE:
            return self.redirect(fetch, status=303)
        target = spawn_url(base, viewer.name, environment, pinned.get("profile"), fetch)
        self.redirect(target, status=303)

    def outcome(self, status: int, message: str, back: str, **links) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        page = templates.get_template("gallery_open.html")
        self.finish(page.render(message=message, back=back, **links))


def reproduce_routes(prefix: str, state: GalleryState) -> list[tuple]:
    return [(rf"{prefix}entries/(\d+)/v(\d+)/open", OpenHandler, {"state": state})]
