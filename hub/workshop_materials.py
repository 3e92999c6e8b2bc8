"""An event's materials in each participant's server, through nbgitpuller.

The participant's own server pulls (as the participant, into ``~/<materials_folder>``):
``pull_link`` is the nbgitpuller link the join handler sends a new participant to, and
``push_update`` makes running servers pull again on the teacher's request. nbgitpuller
merges, so what a participant changed survives an update. The hub never touches the
participant's files itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from urllib.parse import urlencode

from jupyterhub import orm
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .workshop_store import Event

UPDATED = "updated"
PULL_TIMEOUT_SECONDS = 120.0
TOKEN_SECONDS = 300


def pull_query(event: Event, folder: str) -> dict[str, str]:
    """nbgitpuller's arguments: the event's repository and ref into ``folder``."""
    query = {"repo": event.materials_repo}
    if event.materials_ref:
        query["branch"] = event.materials_ref
    return query | {"targetpath": folder}


def pull_link(event: Event, folder: str) -> str:
    """The nbgitpuller page that pulls the materials and then opens ``folder`` in
    JupyterLab, relative to the server's URL (``/user/<name>/``)."""
    query = pull_query(event, folder)
    query["targetPath"] = query.pop("targetpath")
    query["urlpath"] = f"lab/tree/{folder}"
    return "git-pull?" + urlencode(query)


def pull_outcome(stream: str) -> str:
    """``UPDATED`` or the error of one nbgitpuller event stream (``/git-pull/api``)."""
    last = {}
    for line in stream.splitlines():
        if line.startswith("data:"):
            try:
                last = json.loads(line[len("data:") :])
            except ValueError:
                continue
            if last.get("phase") == "error":
                return f"the pull failed: {str(last.get('message') or 'no reason given')[:300]}"
    if last.get("phase") == "finished":
        return UPDATED
    return "the pull did not finish; try again"


async def pull_once(user, event: Event, folder: str, timeout: float) -> str:
    """Make ``user``'s running default server pull the materials again; the outcome."""
    spawner = user.spawner
    if not spawner.ready or spawner.server is None:
        return "not running"
    # A short-lived token of the participant's, valid for their server alone.
    token = user.new_api_token(
        scopes=[f"access:servers!server={user.name}/"],
        expires_in=TOKEN_SECONDS,
        note="materials update",
    )
    url = spawner.server.url + "git-pull/api?" + urlencode(pull_query(event, folder))
    chunks: list[bytes] = []
    request = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}"},
        request_timeout=timeout,
        streaming_callback=chunks.append,
    )
    try:
        await AsyncHTTPClient().fetch(request)
    except HTTPClientError as error:
        if error.code == 599:
            return f"the server did not finish the pull within {timeout:g} s"
        return f"the server refused the pull (HTTP {error.code})"
    except (TimeoutError, OSError) as error:
        return f"the server did not answer: {error}"
    finally:
        _revoke(user, token)
    return pull_outcome(b"".join(chunks).decode("utf-8", "replace"))


def _revoke(user, token: str) -> None:
    orm_token = orm.APIToken.find(user.db, token)
    if orm_token is not None:
        user.db.delete(orm_token)
        user.db.commit()


async def push_update(
    users: Iterable, event: Event, folder: str, timeout: float = PULL_TIMEOUT_SECONDS
) -> dict[str, str]:
    """Make each running server of ``users`` (hub ``User`` objects, the event's
    participants) pull the event's materials again, all at once; per username
    ``"updated"``, ``"not running"`` or the error, for the teacher's class view."""
    users = list(users)
    outcomes = await asyncio.gather(
        *(pull_once(user, event, folder, timeout) for user in users), return_exceptions=True
    )
    return {
        user.name: outcome if isinstance(outcome, str) else f"the update failed: {outcome}"
        for user, outcome in zip(users, outcomes, strict=True)
    }
