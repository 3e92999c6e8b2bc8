"""The re-execution report's routes: ``POST <prefix>api/entries/<id>/versions/<n>/reexecute``
(the author or an admin: queue a run, 202) and ``GET …/reexecution`` (readers: its state
``none``, ``queued``, ``running`` or ``done``, the badge and the per-cell results).

A body ``{"tolerance": {"relative": …, "absolute": …, "image_distance": …}}`` on the POST
sets the run's tolerance; without it, the notebook's metadata
``kioskhub.reproduce.tolerance`` does, else the defaults (``reexec_compare.Tolerance``).
"""

from __future__ import annotations

import json

from tornado import web

from . import reexec_store
from .access import Viewer
from .api_base import GalleryHandler, GalleryState, requires
from .reading import get_version
from .reexec_compare import tolerance_from
from .reexec_run import Reexecutions
from .store import EntryRow


def reexecution_model(run: dict | None) -> dict:
    """A version's re-execution as the API and the page show it."""
    if run is None:
        return {"state": "none", "badge": None, "cells": []}
    return {key: value for key, value in run.items() if key not in ("entry_id", "number")}


class ReexecuteHandler(GalleryHandler):
    def initialize(self, state: GalleryState, runs: Reexecutions) -> None:
        super().initialize(state)
        self.runs = runs

    @requires("manage")
    async def post(self, viewer: Viewer, entry: EntryRow, number: str):
        await get_version(self.state, entry, int(number))
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        requested = body.get("tolerance") if isinstance(body, dict) else None
        tolerance_from({}, requested)  # refused here, with its reason, rather than in the run
        run = await self.state.call(reexec_store.request, entry.entry_id, int(number), requested)
        self.runs.wake()
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
