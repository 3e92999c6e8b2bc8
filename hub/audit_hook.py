"""The hub's request log, extended: admin actions on other users go to the audit log, and
the idle culler's stops count ``kioskhub_servers_culled_total``.

JupyterHub hands every finished request to tornado's ``log_function`` (its own
``log_request``); ``AuditingRequestLog`` calls that first, then classifies the request
(``kioskhub.hub.audit_requests``). Entries are appended by one writer thread, so the event
loop never waits on the file; the counter is only memory.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.log import log_request
from prometheus_client import Counter

from kioskhub.spawner.metrics import metric_label

from . import audit_log
from .audit_requests import (
    OAUTH_AUTHORIZE,
    AuditAction,
    FinishedRequest,
    classify,
    is_cull,
    server_of,
)

log = logging.getLogger("kioskhub.audit")

BODY_LIMIT = 64 * 1024

servers_culled = Counter(
    "kioskhub_servers_culled",
    "Servers stopped by the idle culler, by the profile they were started with.",
    ["profile"],
)


class AuditingRequestLog:
    """tornado's ``log_function`` for the hub: JupyterHub's log line, then the audit."""

    def __init__(self, database: str) -> None:
        self.database = Path(database)
        self._writer: ThreadPoolExecutor | None = None

    def __call__(self, handler) -> None:
        log_request(handler)
        if not isinstance(handler, BaseHandler):
            return
        try:
            self.audit(handler)
        except Exception:
            log.exception("could not audit %s %s", handler.request.method, handler.request.path)

    def audit(self, handler: BaseHandler) -> None:
        request = finished_request(handler)
        if request is None:
            return
        action = classify(request)
        if action is None:
            return
        if is_cull(request, action):
            servers_culled.labels(culled_profile(handler, action)).inc()
        # The request's own start: when the action happened, not when its answer went out.
        self.append(
            audit_log.AuditEntry(
                time=time.time() - handler.request.request_time(),
                actor=request.actor,
                actor_kind=request.actor_kind,
                action=action.action,
                target=action.target,
                detail=action.detail,
            )
        )

    def append(self, entry: audit_log.AuditEntry) -> None:
        """Append ``entry`` in the writer thread; a failure is logged, never raised."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="kioskhub-audit")
        future = self._writer.submit(audit_log.append, self.database, entry)
        future.add_done_callback(_log_failure)

    def __deepcopy__(self, memo) -> AuditingRequestLog:
        # traitlets copies config values; the copy gets a writer of its own on first use.
        return AuditingRequestLog(str(self.database))


def _log_failure(future) -> None:
    error = future.exception()
    if error is not None:
        log.error("could not write the audit log: %s", error)


def finished_request(handler: BaseHandler) -> FinishedRequest | None:
    """What the audit needs of ``handler``'s request, or None for one nobody signed."""
    try:
        actor = handler.current_user
    except Exception:
        return None
    if actor is None:
        return None
    prefix = handler.hub.base_url
    path = handler.request.path
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix) :].rstrip("/")
    return FinishedRequest(
        method=handler.request.method,
        path=relative,
        actor=actor.name,
        actor_kind=getattr(actor, "kind", "user"),
        status=handler.get_status(),
        body=_json_body(handler),
        oauth_client_owner=_oauth_client_owner(handler) if relative == OAUTH_AUTHORIZE else None,
        redirect=str(handler._headers.get("Location") or ""),
    )


def _json_body(handler: BaseHandler) -> dict | None:
    body = handler.request.body
    if not body or len(body) > BODY_LIMIT or handler.request.method == "GET":
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _oauth_client_owner(handler: BaseHandler) -> str | None:
    """The user whose server the OAuth client of the request is, or None."""
    client_id = handler.get_argument("client_id", None)
    if not client_id:
        return None
    client = handler.db.query(orm.OAuthClient).filter_by(identifier=client_id).one_or_none()
    if client is None or client.spawner is None or client.spawner.user is None:
        return None
    return client.spawner.user.name


def culled_profile(handler: BaseHandler, action: AuditAction) -> str:
    """The profile the culled server was started with ('none' if the hub cannot tell)."""
    user = handler.find_user(action.target)
    name = server_of(action)
    if user is None or name not in user.orm_user.orm_spawners:
        return metric_label("")
    # A stopped server's spawner is dropped; this makes it anew from its recorded options.
    spawner = user.spawners[name]
    profile = getattr(spawner, "options_profile", None)
    return metric_label(profile() if callable(profile) else "")
