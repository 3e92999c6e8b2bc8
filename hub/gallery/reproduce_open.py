"""Where "Open in my server" sends a reader: the hub's spawn URL with an environment, or
their running server's fetch endpoint; and the version page's panel that follows a pinned
rebuild (``reproduce_pinned``) and opens the server in it once it is ready."""

from __future__ import annotations

from typing import Any

from kioskhub.image_builder.user_gitlab_credentials import hub_user_model

from .access import Viewer
from .api_base import GalleryState
from .pinning import environment_name
from .reproduce import BUSY, OTHER, REUSE, ServerDecision, fetch_url, server_decision, spawn_url
from .reproduce_build import hub_base_url
from .reproduce_pinned import PinnedBuildRefused, pinned_build, rebuild_view


async def open_target(
    state: GalleryState, hub_auth, viewer: Viewer, entry_id: int, version: dict, environment: str
) -> tuple[str | None, ServerDecision]:
    """Where "Open" sends the reader for ``environment`` (the hub's spawn URL, or their
    running server's fetch endpoint), or None and the decision that says why not now."""
    base = hub_base_url()
    user = await hub_user_model(hub_auth, viewer.name)
    server = (user.get("servers") or {}).get("")
    running = None
    if server:
        running, _ = environment_name(state.site, server.get("user_options") or {}, viewer.groups)
    decision = server_decision(server, running, environment)
    if decision.action in (OTHER, BUSY):
        return None, decision
    fetch = fetch_url(base, viewer.name, entry_id, version["number"])
    if decision.action == REUSE:
        return fetch, decision
    profile = version["pinning"].get("profile")
    return spawn_url(base, viewer.name, environment, profile, fetch), decision


async def rebuild_panel(
    state: GalleryState, hub_auth, viewer: Viewer, entry_id: int, version: dict, build_id: int
) -> dict[str, Any]:
    """The version page's words on pinned build ``build_id`` of ``viewer``'s, and where it
    goes once ready: ``open_url`` (the page follows it at once when the rebuild is the same
    build, and links it when it differs) or ``note`` (why the server cannot take it now)."""
    try:
        build = await pinned_build(state.site, hub_auth.api_token, build_id, viewer.name)
    except PinnedBuildRefused as refused:
        return {"view": None, "error": str(refused)}
    view = rebuild_view(version["pinning"], build)
    panel: dict[str, Any] = {"view": view, "open_url": None, "note": None}
    if view.state in ("ready", "differs") and build.get("spawn_name"):
        target, decision = await open_target(
            state, hub_auth, viewer, entry_id, version, build["spawn_name"]
        )
        panel["open_url"], panel["note"] = target, None if target else decision.message
    return panel
