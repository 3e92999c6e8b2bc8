"""``/hub/api/quota-overrides``: admins list, set and remove one user's quota override.

``PUT /hub/api/quota-overrides/<user>`` with ``{"limits": {...}, "until": "YYYY-MM-DD" |
null, "reason": "..."}`` replaces the user's limits key by key (the keys of the
``quotas:`` section's limits) until the start of that day (UTC), or until removed;
``DELETE`` removes it; ``GET /hub/api/quota-overrides`` lists those in force. Every handler
needs ``admin:users``; every change is written to the audit log.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from pydantic import ValidationError
from tornado import web

from kioskhub.hub.schema.accounting import usage_database
from kioskhub.hub.schema.quotas import QuotaLimits
from kioskhub.spawner import usage_store

from . import audit_log
from .audit_requests import REMOVE_QUOTA_OVERRIDE, SET_QUOTA_OVERRIDE

BODY_KEYS = ("limits", "until", "reason")
REASON_LIMIT = 500


def parse_override(body: Any, now: float) -> tuple[dict[str, Any], float | None, str]:
    """The limits (as given, validated), end time and reason of a PUT body.

    Raises ``ValueError`` with a message naming the key that is wrong and what to write.
    """
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object: {"limits": {...}, "until": ..., ...}')
    unknown = sorted(set(body) - set(BODY_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; the keys are {', '.join(BODY_KEYS)}")
    limits = body.get("limits")
    if not isinstance(limits, dict) or not limits:
        raise ValueError(
            'limits: give an object of limits to replace, e.g. {"gpus": 2}; keys: '
            + ", ".join(QuotaLimits.model_fields)
        )
    try:
        validated = QuotaLimits.model_validate(limits)
    except ValidationError as error:
        raise ValueError("; ".join(_problem(e) for e in error.errors(include_url=False))) from None
    until = _until(body.get("until"), now)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > REASON_LIMIT:
        raise ValueError(f"reason: give a text of at most {REASON_LIMIT} characters")
    return validated.model_dump(mode="json", exclude_unset=True), until, reason


def _problem(error: dict[str, Any]) -> str:
    where = "limits." + ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (allowed: {', '.join(QuotaLimits.model_fields)})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message} (got {json.dumps(error.get('input'), default=str)[:60]})"


def _until(given: Any, now: float) -> float | None:
    if given is None:
        return None
    try:
        day = date.fromisoformat(given) if isinstance(given, str) else None
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"until: {given!r} is not a day; write YYYY-MM-DD, or null for no end")
    until = datetime.combine(day, datetime.min.time(), UTC).timestamp()
    if until <= now:
        raise ValueError(f"until: {given} has begun; give a later day")
    return until


def override_as_dict(override: usage_store.QuotaOverride) -> dict[str, Any]:
    return {
        "limits": json.loads(override.limits),
        "until": _day(override.until) if override.until is not None else None,
        "set_by": override.set_by,
        "set_at": datetime.fromtimestamp(override.set_at, UTC).isoformat(),
        "reason": override.reason,
    }


def _day(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).date().isoformat()


class QuotaOverridesAPIHandler(APIHandler):
    """List, set and remove quota overrides (admins: ``admin:users``)."""

    def initialize(self, state_dir: str) -> None:
        self.usage_database = usage_database(Path(state_dir))
        self.audit_database = audit_log.audit_database(Path(state_dir))

    @needs_scope("admin:users")
    async def get(self, username: str = "") -> None:
        found = await asyncio.to_thread(usage_store.overrides, self.usage_database, time.time())
        if username:
            found = {name: o for name, o in found.items() if name == username}
        self.write({"overrides": {name: override_as_dict(o) for name, o in found.items()}})

    @needs_scope("admin:users")
    async def put(self, username: str = "") -> None:
        self._require_user(username)
        now = time.time()
        try:
            limits, until, reason = parse_override(self.get_json_body(), now)
        except ValueError as error:
            raise web.HTTPError(400, str(error)) from None
        override = usage_store.QuotaOverride(
            username=username,
            limits=json.dumps(limits, sort_keys=True),
            until=until,
            set_by=self.current_user.name,
            set_at=now,
            reason=reason,
        )
        await asyncio.to_thread(usage_store.set_override, self.usage_database, override)
        until_text = _day(until) if until is not None else "no end"
        detail = f"limits: {override.limits}; until: {until_text}; reason: {reason}"
        await self._audit(SET_QUOTA_OVERRIDE, username, detail, now)
        self.write({"overrides": {username: override_as_dict(override)}})

    @needs_scope("admin:users")
    async def delete(self, username: str = "") -> None:
        self._require_user(username)
        removed = await asyncio.to_thread(
            usage_store.remove_override, self.usage_database, username
        )
        if not removed:
            raise web.HTTPError(404, f"{username} has no quota override")
        await self._audit(REMOVE_QUOTA_OVERRIDE, username, "", time.time())
        self.set_status(204)

    def _require_user(self, username: str) -> None:
        if not username:
            raise web.HTTPError(405, "name the user: /hub/api/quota-overrides/<user>")
        if self.find_user(username) is None:
            raise web.HTTPError(404, f"there is no user {username!r} on this hub")

    async def _audit(self, action: str, target: str, detail: str, now: float) -> None:
        entry = audit_log.AuditEntry(
            time=now,
            actor=self.current_user.name,
            actor_kind=getattr(self.current_user, "kind", "user"),
            action=action,
            target=target,
            detail=detail,
        )
        await asyncio.to_thread(audit_log.append, self.audit_database, entry)


def quota_override_handlers(state_dir: Path) -> list[tuple[str, type, dict[str, str]]]:
    """The routes, below the hub's prefix."""
    settings = {"state_dir": str(state_dir)}
    return [
        (r"/api/quota-overrides", QuotaOverridesAPIHandler, settings),
        (r"/api/quota-overrides/([^/]+)", QuotaOverridesAPIHandler, settings),
    ]
