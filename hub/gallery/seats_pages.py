"""The ticket that a reviewer link page's "Open in a temporary seat" mints.

``SeatTicketHandler`` (``POST review/<secret>/v<n>/seat``, the page's form with
its link-bound ``_xsrf``) checks the same again, mints a single-use ticket bound to the
link, entry and version (``seats_store.mint_ticket``) and sends the browser to the hub's
seat page, ``/hub/gallery-seat/<ticket>`` (``seats_hub``), which makes the seat. What
the page offers is ``seats_offer``'s.
"""

from __future__ import annotations

import time

from tornado import web

from . import seats_store
from .api_base import GalleryState
from .pages import templates, write_page_error
from .reading import get_version
from .reproduce_build import hub_base_url
from .review import ReviewHandler
from .seats_offer import seat_problem
from .threads_xsrf import LinkXsrf

SEAT_PAGE = "hub/gallery-seat/"


class SeatTicketHandler(LinkXsrf, ReviewHandler):
    """``POST review/<secret>/v<n>/seat``: a ticket for a seat, then the hub's seat page."""

    async def post(self, secret: str, number: str):
        entry, link = await self.opened(secret)
        if not self.state.site.gallery.reviewer_seats.enabled:
            raise web.HTTPError(
                404,
                "this site offers no temporary seats: ask the author for a lab account, or "
                "download the RO-Crate",
            )
        version = await get_version(self.state, entry, int(number))
        pinned = version["pinning"]
        problem = await seat_problem(self.state, link, pinned)
        if problem:
            self.set_status(409)
            self.set_header("Content-Type", "text/html; charset=utf-8")
            page = templates.get_template("gallery_open.html")
            back = f"{self.base(secret)}v{version['number']}"
            return self.finish(page.render(message=problem, back=back))
        ticket = await self.state.call(
            seats_store.mint_ticket, link.link_id, entry.entry_id, version["number"],
            pinned.get("environment") or "", pinned.get("profile"), time.time(),
        )  # fmt: skip
        self.redirect(f"{hub_base_url()}{SEAT_PAGE}{ticket}", status=303)

    def write_error(self, status_code: int, **kwargs) -> None:
        write_page_error(self, status_code, **kwargs)


def seat_routes(prefix: str, state: GalleryState) -> list[tuple]:
    args = {"state": state, "prefix": prefix}
    return [(rf"{prefix}review/([A-Za-z0-9_-]{{43}})/v(\d+)/seat", SeatTicketHandler, args)]
