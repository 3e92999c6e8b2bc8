"""Which finished hub requests are admin actions on another user: a pure classification.

The hub's request log (``kioskhub.hub.audit_hook``) hands every finished request to
``classify``: its method, its path below the hub's prefix (``api/users/bob/server``), who
made it (a user or a service) and its status. A successful request that stops, starts,
changes or deletes another user, makes or revokes a token for them, or authorizes access
to their server (an admin opening another user's server goes through the hub's OAuth
authorization for the client ``jupyterhub-user-<name>``) becomes an ``AuditAction``;
anything else (a read, a failure, a user acting on themself) is None.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

CULLER_SERVICE = "idle-culler"
"""The idle culler's service name (``kioskhub.hub.idle_culling.SERVICE_NAME``)."""

STOP_SERVER = "stop server"
START_SERVER = "start server"
DELETE_USER = "delete user"
CHANGE_USER = "change user"
CREATE_TOKEN = "create token"
REVOKE_TOKEN = "revoke token"
ACCESS_SERVER = "access server"
SET_QUOTA_OVERRIDE = "set quota override"
REMOVE_QUOTA_OVERRIDE = "remove quota override"
COLLECT_WORK = "collect work"

DETAIL_LIMIT = 500
SHOWN_USER_KEYS = ("name", "admin")
"""Changed keys whose new value the log shows; others (``auth_state``) are named only."""

_USER = r"(?P<user>[^/]+)"
_SERVER = r"(?:/server|/servers/(?P<server>[^/]*))"
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("DELETE", re.compile(rf"api/users/{_USER}{_SERVER}"), STOP_SERVER),
    ("POST", re.compile(rf"api/users/{_USER}{_SERVER}"), START_SERVER),
    ("POST", re.compile(rf"spawn/{_USER}(?:/(?P<server>[^/]+))?"), START_SERVER),
    ("DELETE", re.compile(rf"api/users/{_USER}"), DELETE_USER),
    ("PATCH", re.compile(rf"api/users/{_USER}"), CHANGE_USER),
    ("POST", re.compile(rf"api/users/{_USER}/tokens"), CREATE_TOKEN),
    ("DELETE", re.compile(rf"api/users/{_USER}/tokens/(?P<token>[^/]+)"), REVOKE_TOKEN),
)
OAUTH_AUTHORIZE = "api/oauth2/authorize"


@dataclass(frozen=True)
class FinishedRequest:
    """What the audit needs of one finished request to the hub."""

    method: str
    path: str
    """Below the hub's prefix, still URL-quoted: ``api/users/bob/server``."""
    actor: str
    actor_kind: str
    """``user`` or ``service``."""
    status: int
    body: Mapping[str, Any] | None = None
    """The JSON body of a write, when it was a JSON object."""
    oauth_client_owner: str | None = None
    """For an OAuth authorization: the user whose server the client is, if it is one."""
    redirect: str = ""
    """Where a redirect (302) sent the browser."""


@dataclass(frozen=True)
class AuditAction:
    action: str
    target: str
    detail: str = ""


def classify(request: FinishedRequest) -> AuditAction | None:
    """The admin action on another user that ``request`` was, or None."""
    if not request.actor:
        return None
    if request.path == OAUTH_AUTHORIZE:
        found = _authorization(request)
    elif 200 <= request.status < 400:
        found = _routed(request)
    else:
        found = None
    if found is None or (request.actor_kind == "user" and found.target == request.actor):
        return None
    return found


def is_cull(request: FinishedRequest, action: AuditAction | None) -> bool:
    """Whether ``request`` was the idle culler stopping a server."""
    return (
        action is not None
        and action.action == STOP_SERVER
        and request.actor_kind == "service"
        and request.actor == CULLER_SERVICE
    )


def server_of(action: AuditAction) -> str:
    """The server name a start/stop action's detail names ('' for the default server)."""
    prefix = "server: "
    if not action.detail.startswith(prefix):
        return ""
    name = action.detail[len(prefix) :].split(";", 1)[0]
    return "" if name == "default" else name


def _authorization(request: FinishedRequest) -> AuditAction | None:
    # Access is granted by a redirect carrying a code: at once (GET) when no confirmation is
    # needed, or after the confirmation form (POST). The confirmation page itself is a 200,
    # and a refusal redirects with an error instead of a code.
    if request.status != 302 or request.method not in ("GET", "POST"):
        return None
    if not request.oauth_client_owner or "code" not in parse_qs(urlsplit(request.redirect).query):
        return None
    return AuditAction(ACCESS_SERVER, request.oauth_client_owner, "through the hub's OAuth")


def _routed(request: FinishedRequest) -> AuditAction | None:
    for method, pattern, action in ROUTES:
        if request.method != method:
            continue
        match = pattern.fullmatch(request.path)
        if match is None:
            continue
        groups = match.groupdict()
        target = unquote(groups["user"])
        return AuditAction(action, target, _detail(action, groups, request.body or {}))
    return None


def _detail(action: str, groups: Mapping[str, str | None], body: Mapping[str, Any]) -> str:
    if action in (STOP_SERVER, START_SERVER):
        detail = f"server: {unquote(groups.get('server') or '') or 'default'}"
        if action == STOP_SERVER and body.get("remove") is True:
            detail += "; removed"
        return detail
    if action == CHANGE_USER:
        changed = {k: body[k] if k in SHOWN_USER_KEYS else "(not shown)" for k in body}
        return _limited(json.dumps(changed, sort_keys=True))
    if action == CREATE_TOKEN:
        scopes = body.get("scopes")
        return _limited(f"scopes: {json.dumps(scopes) if scopes else 'all of the user'}")
    if action == REVOKE_TOKEN:
        return _limited(f"token: {unquote(groups.get('token') or '')}")
    return ""


def _limited(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"
