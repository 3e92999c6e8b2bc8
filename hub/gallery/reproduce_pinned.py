"""Rebuilding a version's pinned environment from its commit, when the environment's own
build has moved on since (``reproduce.build_check`` says REBUILT).

"Open in my server" asks the Environments service for a *pinned build* of the commit the
version was built from (``kioskhub.image_builder.pinned_builds_api``), on the reader's
behalf, with the gallery's own token (the custom scope ``PINNED_BUILDS_SCOPE``, which only
the gallery holds). The environment's own build is left as it is; the pinned build is kept
beside it and offered to that reader alone, as ``pin-<hash>``. While it builds, the version
page says so and refreshes itself; once it is ready with the pinned content hash or digest,
the page opens the reader's server in it (the hub's spawn URL, as "Open" does), and when
the rebuild came out different it says so and lets the reader open it knowingly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.hub_service import SERVICE_NAME as BUILDER_SERVICE

from .reproduce import REBUILT, BuildCheck, build_identity

REFRESH_SECONDS = 3


class PinnedBuildRefused(Exception):
    """The Environments service refused the pinned build (its status and message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def can_rebuild(site: Site, pinned: dict[str, Any], check: BuildCheck) -> bool:
    """Whether "Open" rebuilds the pinned commit: the name now launches another build,
    the version knows its commit, and this site builds environments."""
    return check.status == REBUILT and bool(pinned.get("commit")) and site.builder.enabled


def builder_api(site: Site) -> str:
    return f"http://127.0.0.1:{site.builder.port}/services/{BUILDER_SERVICE}/api/pinned-builds"


async def _call(token: str, url: str, body: dict | None = None) -> dict[str, Any]:
    request = HTTPRequest(
        url,
        method="POST" if body is not None else "GET",
        body=json.dumps(body) if body is not None else None,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        request_timeout=30,
    )
    reply = await AsyncHTTPClient().fetch(request, raise_error=False)
    try:
        data = json.loads(reply.body or b"{}")
    except json.JSONDecodeError:
        data = {}
    if reply.code not in (200, 202):
        message = data.get("message") or f"the Environments service answered {reply.code}"
        raise PinnedBuildRefused(reply.code if reply.code in (403, 404, 429) else 502, message)
    return data


async def ask_pinned_build(
    site: Site, token: str, pinned: dict[str, Any], reader: str
) -> dict[str, Any]:
    """Queue (or find) the pinned build of ``pinned``'s commit for ``reader``."""
    body = {"environment": pinned.get("environment"), "commit": pinned["commit"], "user": reader}
    return await _call(token, builder_api(site), body)


async def pinned_build(site: Site, token: str, build_id: int, reader: str) -> dict[str, Any]:
    """The pinned build ``build_id`` as granted to ``reader`` (404 for anyone else)."""
    return await _call(token, f"{builder_api(site)}/{build_id}?user={_quoted(reader)}")


def _quoted(name: str) -> str:
    return quote(name, safe="")


def rebuilt_identity(build: dict[str, Any]) -> str | None:
    return build.get("image_digest") or build.get("content_hash")


def same_build(pinned: dict[str, Any], build: dict[str, Any]) -> bool:
    """Whether the rebuild is the build the version was pinned to."""
    wanted = pinned.get("digest") or pinned.get("content_hash")
    return bool(wanted) and wanted == rebuilt_identity(build)


@dataclass(frozen=True)
class RebuildView:
    """What the version page says about a pinned rebuild, and where it goes next."""

    state: str  # "building", "ready", "differs" or "failed"
    message: str
    progress: int = 0
    phase: str = ""
    refresh: bool = False  # refresh the page to follow the build


def rebuild_view(pinned: dict[str, Any], build: dict[str, Any]) -> RebuildView:
    """The page's words for pinned build ``build`` of version pinning ``pinned`` (pure)."""
    commit = pinned.get("commit") or build.get("commit") or ""
    status = build.get("status")
    if status in ("queued", "building"):
        return RebuildView(
            "building",
            f"The environment this version was pinned to is gone; rebuilding it from commit "
            f"{commit} …",
            progress=int(build.get("progress") or 0),
            phase=str(build.get("phase") or status),
            refresh=True,
        )
    if status == "failed":
        return RebuildView(
            "failed",
            f"The environment this version was pinned to is gone, and rebuilding it from "
            f"commit {commit} failed: {build.get('error') or 'see the Environments page'}. "
            "Download the RO-Crate to run the notebook elsewhere.",
            phase="failed",
        )
    if same_build(pinned, build):
        return RebuildView(
            "ready",
            f"Rebuilt from commit {commit}: the same build as pinned "
            f"({rebuilt_identity(build)}). Opening your server in it …",
            progress=100,
            phase="ready",
        )
    return RebuildView(
        "differs",
        f"Rebuilt from commit {commit}, but the rebuild differs from the pinned build: it is "
        f"{rebuilt_identity(build) or 'unknown'}, this version used "
        f"{build_identity(pinned) or 'unknown'}. You may open it knowing that.",
        progress=100,
        phase="ready",
    )
