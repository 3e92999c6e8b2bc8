"""``/hub/api/workshops/<event>/collections``: a teacher collects work and downloads it.

- ``POST …/collections``: collect every participant's materials folder now (in a thread:
  the event loop never waits); answers 201 with the archive's ``name`` and ``manifest``.
- ``GET …/collections``: the event's archives (name, bytes, created), newest first.
- ``GET …/collections/<name>``: download one; a name that is not in the listing is 404.

Each needs the event's teacher or an admin (``workshop_teacher_requests``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from kioskhub.hub.schema.site import Site

from . import audit_log, workshop_collect, workshop_store
from .audit_requests import COLLECT_WORK
from .workshop_teacher_requests import EVENT_ID_PATTERN, managed_event, store_path

CHUNK_BYTES = 2**20


class CollectionsHandler(APIHandler):
    """List an event's collections, or collect now."""

    def initialize(self, site: Site) -> None:
        self.site = site

    async def get(self, event_id: str) -> None:
        await managed_event(self, self.site, event_id)
        found = await asyncio.to_thread(
            workshop_collect.collections, self.site.hub.state_dir, event_id
        )
        self.finish({"collections": found})

    async def post(self, event_id: str) -> None:
        event = await managed_event(self, self.site, event_id)
        participants = await asyncio.to_thread(
            workshop_store.participants, store_path(self.site), event_id
        )
        try:
            path, manifest = await asyncio.to_thread(
                workshop_collect.collect_with_manifest, self.site, event, participants
            )
        except workshop_collect.CollectUnavailable as error:
            raise web.HTTPError(409, str(error)) from None
        self.log.info(
            "Workshop %s: %s collected the work of %d participants into %s",
            event_id,
            self.current_user.name,
            len(participants),
            path.name,
        )
        await asyncio.to_thread(
            audit_collection, self.site, self.current_user.name, event_id, manifest, path.name
        )
        self.set_status(201)
        self.finish({"name": path.name, "manifest": manifest})


def audit_collection(site: Site, teacher: str, event_id: str, manifest: dict, name: str) -> None:
    """One audit entry per participant whose folder was read: a teacher read it."""
    database = audit_log.audit_database(site.hub.state_dir)
    now = time.time()
    for line in manifest["participants"]:
        detail = f"event {event_id}, {line['files']} files into {name}"
        entry = audit_log.AuditEntry(now, teacher, "user", COLLECT_WORK, line["username"], detail)
        audit_log.append(database, entry)


class CollectionDownloadHandler(APIHandler):
    """Download one archive of an event."""

    def initialize(self, site: Site) -> None:
        self.site = site

    async def get(self, event_id: str, name: str) -> None:
        await managed_event(self, self.site, event_id)
        path = await asyncio.to_thread(
            workshop_collect.collection_path, self.site.hub.state_dir, event_id, name
        )
        if path is None:
            raise web.HTTPError(
                404, f"Event {event_id} has no collection {name[:80]!r}; list them first."
            )
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
        with await asyncio.to_thread(open, path, "rb") as archive:
            while chunk := await asyncio.to_thread(archive.read, CHUNK_BYTES):
                self.write(chunk)
                await self.flush()
        self.finish()


def collect_hub_settings(site: Site) -> dict[str, Any]:
    """The routes of collecting, under the hub's prefix (none while workshops are off)."""
    if not site.workshops.enabled:
        return {}
    options = {"site": site}
    events = rf"/api/workshops/({EVENT_ID_PATTERN})/collections"
    return {
        "JupyterHub": {
            "extra_handlers": [
                (events, CollectionsHandler, options),
                (events + r"/([^/]+)", CollectionDownloadHandler, options),
            ]
        }
    }
