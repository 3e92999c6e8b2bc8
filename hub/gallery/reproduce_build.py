"""Whether a version's pinned environment still launches the same build, asked of the site
config and the build catalog today (``reproduce.build_check`` decides); used by the version
page and by its "Open in my server" button."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .api_base import GalleryState
from .pinning import pinning_for
from .reproduce import BUILDER_PAGE, BuildCheck, build_check, build_identity
from .reproduce_pinned import can_rebuild


def hub_base_url() -> str:
    """The hub's base URL (``JUPYTERHUB_BASE_URL``, given to every service), ending in /."""
    base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
    return base if base.endswith("/") else base + "/"


async def current_build(state: GalleryState, pinned: dict[str, Any]) -> BuildCheck:
    """The pinned environment compared with what its name launches today."""
    current = await asyncio.to_thread(
        pinning_for, state.site, state.catalog, pinned.get("environment") or "",
        pinned.get("profile"),
    )  # fmt: skip
    return build_check(pinned, current)


async def reproduce_panel(state: GalleryState, version: dict[str, Any], action: str) -> dict:
    """What the version page shows beside its "Open in my server" button."""
    pinned = version["pinning"]
    check = await current_build(state, pinned)
    if can_rebuild(state.site, pinned, check):
        check = BuildCheck(
            check.status,
            f"The environment {pinned.get('environment')!r} was rebuilt since this version: "
            f"Open rebuilds commit {pinned['commit']} beside it and opens your server in that "
            f"build ({build_identity(pinned)}).",
        )
    return {
        "check": check,
        "action": action,
        "builder": hub_base_url() + BUILDER_PAGE if check.builder_link else None,
    }
