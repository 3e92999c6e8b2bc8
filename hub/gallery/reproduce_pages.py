"""The "Open in my server" button of a version's page, and what pressing it does.

``reproduce_panel`` tells the page whether the pinned environment still launches the same
build (``reproduce.build_check``). ``OpenHandler`` (``POST entries/<id>/v<n>/open``, the
page's form with its ``_xsrf``) checks that the reader may read the entry (404 otherwise),
then sends the browser, as the reader, to the hub's spawn URL with the pinned environment
and profile, or straight to their running server when it already runs that environment;
either way ``next`` is their server's fetch endpoint, which copies the files as the reader.
A server running another environment is left running, and the reader is told so. The
service only reads servers (``read:servers``); it never starts or stops one.

When the environment was rebuilt since the version (and the site builds environments),
"Open" asks for a pinned build of the version's commit (``reproduce_pinned``): a ready one
with the pinned content hash or digest is opened at once, as ``pin-<hash>``; otherwise the
browser goes back to the version page with ``?rebuild=<build>``, which follows the build
and opens the server once it is ready (``rebuild_panel``).
"""

from __future__ import annotations

from tornado import web

from .access import Viewer
from .api_base import GalleryState, requires
from .pages import PageHandler, templates
from .reading import get_version
from .reproduce import BUILDER_PAGE, OTHER
from .reproduce_build import current_build, hub_base_url
from .reproduce_open import open_target
from .reproduce_pinned import PinnedBuildRefused, ask_pinned_build, can_rebuild, same_build
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
        if can_rebuild(self.state.site, pinned, check):
            try:
                build = await ask_pinned_build(
                    self.state.site, self.hub_auth.api_token, pinned, viewer.name
                )
            except PinnedBuildRefused as refused:
                return self.outcome(refused.status, str(refused), back)
            if build.get("status") != "ready" or not same_build(pinned, build):
                return self.redirect(f"{back}?rebuild={int(build['id'])}", status=303)
            environment = build["spawn_name"]
        target, decision = await open_target(
            self.state, self.hub_auth, viewer, entry.entry_id, version, environment
        )
        if target:
            return self.redirect(target, status=303)
        home = {"home": f"{base}hub/home"} if decision.action == OTHER else {}
        self.outcome(409, decision.message, back, **home)

    def outcome(self, status: int, message: str, back: str, **links) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        page = templates.get_template("gallery_open.html")
        self.finish(page.render(message=message, back=back, **links))


def reproduce_routes(prefix: str, state: GalleryState) -> list[tuple]:
    return [(rf"{prefix}entries/(\d+)/v(\d+)/open", OpenHandler, {"state": state})]
