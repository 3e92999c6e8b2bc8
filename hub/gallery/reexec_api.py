"""The re-execution report's routes: ``POST <prefix>api/entries/<id>/versions/<n>/reexecute``
(the author or an admin: queue a run, 202; from the version page's form, back to the page)
and ``GET …/reexecution`` (readers: its state ``none``, ``queued``, ``running`` or
``done``, the badge and the per-cell results).

A JSON body ``{"tolerance": {"relative": …, "absolute": …, "image_distance": …}}`` on the
POST sets the run's tolerance; without it, the publish request's does, else the notebook's
metadata ``kioskhub.reproduce.tolerance``, else the defaults (``reexec_compare.Tolerance``).
"""

from __future__ import annotations

import json

from tornado import web

from . import reexec_store
from .access import Viewer
from .api_base import GalleryHandler, GalleryState, requires
from .pages import write_page_error
from .reading import get_version
from .reexec_compare import tolerance_from
from .reexec_run import Reexecutions
from .reexec_store import reexecution_model
from .store import EntryRow
from .threads_xsrf import is_json


class ReexecuteHandler(GalleryHandler):
    """JSON in and out, or the version page's form (``_xsrf``), answered by going back to
    the page, where the run's state shows."""

    def initialize(self, state: GalleryState, runs: Reexecutions) -> None:
        super().initialize(state)
        self.runs = runs

    def is_form(self) -> bool:
        return not is_json(self.request)

    def write_error(self, status_code: int, **kwargs) -> None:
        if self.is_form():
            write_page_error(self, status_code, **kwargs)
        else:
            super().write_error(status_code, **kwargs)

    def requested_tolerance(self) -> dict | None:
        if self.is_form() or not self.request.body:
            return None
        try:
            body = json.loads(self.request.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise web.HTTPError(400, f"the body is not JSON: {error}") from None
        requested = body.get("tolerance") if isinstance(body, dict) else None
        tolerance_from({}, requested)  # refused here, with its reason, rather than in the run
        return requested

    @requires("manage")
    async def post(self, viewer: Viewer, entry: EntryRow, number: str):
        await get_version(self.state, entry, int(number))
        requested = self.requested_tolerance()
        run = await self.state.call(reexec_store.request, entry.entry_id, int(number), requested)
        self.runs.wake()
        if self.is_form():
            self.redirect(f"{self.prefix}entries/{entry.entry_id}/v{number}", status=303)
        else:
            self.send(reexecution_model(run), 202)


class ReexecutionHandler(GalleryHandler):
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow, number: str):
        await get_version(self.state, entry, int(number))
        run = await self.state.call(reexec_store.get, entry.entry_id, int(number))
        self.send(reexecution_model(run))


def reexecution_routes(prefix: str, state: GalleryState, runs: Reexecutions) -> list[tuple]:
    version = rf"{prefix}api/entries/(\d+)/versions/(\d+)"
    return [
        (rf"{version}/reexecute", ReexecuteHandler, {"state": state, "runs": runs}),
        (rf"{version}/reexecution", ReexecutionHandler, {"state": state}),
    ]
