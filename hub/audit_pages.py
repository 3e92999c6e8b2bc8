"""The audit log for admins: the page ``/hub/audit`` and ``GET /hub/api/audit``, and the
hub settings that record it.

Both need ``admin:users``. The page lists the newest entries (``?user=`` keeps those by
or about one user) and the quota overrides in force; the API returns entries from
``?since=YYYY-MM-DD`` (default: the last 30 days) as JSON.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from kioskhub.hub.schema.accounting import usage_database
from kioskhub.hub.schema.site import Site
from kioskhub.spawner import usage_store

from . import audit_log
from .audit_hook import AuditingRequestLog
from .quota_override_api import override_as_dict, quota_override_handlers

PAGE_LIMIT = 500
DEFAULT_DAYS = 30


def entry_as_dict(entry: audit_log.AuditEntry) -> dict[str, Any]:
    when = datetime.fromtimestamp(entry.time, UTC).isoformat(timespec="seconds")
    return {**entry.as_dict(), "when": when}


def since_day(given: str | None, now: float) -> float:
    """The start (UTC) of the day ``given`` as YYYY-MM-DD; none: ``DEFAULT_DAYS`` ago."""
    if not given:
        return now - DEFAULT_DAYS * 86400
    try:
        return audit_log.day_start(given)
    except ValueError as error:
        raise web.HTTPError(400, f"since: {error}") from None


class AuditPageHandler(BaseHandler):
    """``/hub/audit``: the newest entries and the quota overrides in force."""

    def initialize(self, state_dir: str) -> None:
        self.state_dir = Path(state_dir)

    @web.authenticated
    @needs_scope("admin:users")
    async def get(self) -> None:
        user = self.get_argument("user", "").strip()
        entries, overrides = await asyncio.to_thread(self._read, user)
        html = await self.render_template(
            "audit.html",
            entries=[entry_as_dict(e) for e in entries],
            overrides={name: override_as_dict(o) for name, o in sorted(overrides.items())},
            filter_user=user,
            shown_limit=PAGE_LIMIT if len(entries) == PAGE_LIMIT else 0,
        )
        self.finish(html)

    def _read(self, user: str):
        entries = audit_log.entries(
            audit_log.audit_database(self.state_dir), user=user, limit=PAGE_LIMIT
        )
        return entries, usage_store.overrides(usage_database(self.state_dir), time.time())


class AuditAPIHandler(APIHandler):
    """``GET /hub/api/audit?since=YYYY-MM-DD&user=NAME``: entries, newest first."""

    def initialize(self, state_dir: str) -> None:
        self.database = audit_log.audit_database(Path(state_dir))

    @needs_scope("admin:users")
    async def get(self) -> None:
        since = since_day(self.get_argument("since", None), time.time())
        user = self.get_argument("user", "").strip()
        entries = await asyncio.to_thread(audit_log.entries, self.database, since, user)
        self.write({"entries": [entry_as_dict(e) for e in entries]})


def audit_hub_settings(site: Site) -> dict[str, Any]:
    """Record admin actions through the hub's request log; serve the page and the APIs."""
    state = site.hub.state_dir
    handler_settings = {"state_dir": str(state)}
    return {
        "JupyterHub": {
            "tornado_settings": {
                "log_function": AuditingRequestLog(str(audit_log.audit_database(state)))
            },
            "extra_handlers": [
                (r"/audit", AuditPageHandler, handler_settings),
                (r"/api/audit", AuditAPIHandler, handler_settings),
                *quota_override_handlers(state),
            ],
        }
    }
