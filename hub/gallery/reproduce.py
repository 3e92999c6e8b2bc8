"""Reproduce a version in one click: the pure decisions behind its "Open in my server" button.

- ``build_check``: whether the environment name a version was pinned to still launches the
  same build (image digest or venv content hash; for site environments their image or
  folder), was rebuilt since, or is gone; and what the page says about it.
- ``server_decision``: start the reader's server, reuse it, or tell them it runs another
  environment (never stop it for them).
- ``spawn_url`` and ``fetch_url``: the hub's own spawn URL with the pinned options, whose
  ``next`` is the reader's server's fetch endpoint (``kioskhub.extensions.gallery_fetch``),
  which copies the version's files into ``~/gallery/<entry>/v<N>/`` and opens the notebook.

The browser follows these URLs as the reader: the hub starts the server with the reader's
own rights and shows its progress page; the gallery needs no scope to start servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

SAME, REBUILT, GONE = "same", "rebuilt", "gone"
START, REUSE, OTHER, BUSY = "start", "reuse", "other", "busy"
BUILDER_PAGE = "services/environments/"
FETCH_ENDPOINT = "kioskhub/gallery/fetch"
OWN_VENV = "KioskHub's own environment"


@dataclass(frozen=True)
class BuildCheck:
    """Whether the pinned environment still launches the same build, and what to tell."""

    status: str  # SAME, REBUILT or GONE
    message: str
    builder_link: bool = False  # link the Environments page (rebuild from the commit)

    @property
    def can_open(self) -> bool:
        return self.status != GONE


def build_identity(pinning: dict[str, Any]) -> str | None:
    """What identifies a build: the image digest, the venv content hash, else the image or
    folder a site environment names (None when nothing does: KioskHub's own venv)."""
    for key in ("digest", "content_hash", "image", "path"):
        if pinning.get(key):
            return str(pinning[key])
    return None


def build_check(pinned: dict[str, Any], current: dict[str, Any]) -> BuildCheck:
    """Compare a version's pinning with what its environment name launches now.

    ``current`` is ``pinning.pinning_for`` of the same name today (source "unknown" when the
    site config and the build catalog no longer know it).
    """
    name = pinned.get("environment") or "unknown"
    if current.get("source") == "unknown":
        if pinned.get("commit"):
            return BuildCheck(
                GONE,
                f"The environment {name!r} is gone: rebuild it from commit "
                f"{pinned['commit']} of {pinned.get('repository') or 'its repository'} on the "
                "Environments page, then open this version again.",
                builder_link=True,
            )
        return BuildCheck(
            GONE,
            f"The environment {name!r} is no longer offered at this site: ask the site's "
            "admins for it, or download the RO-Crate to run the notebook elsewhere.",
        )
    old, new = build_identity(pinned), build_identity(current)
    if old != new:
        return BuildCheck(
            REBUILT,
            f"The environment {name!r} was rebuilt since this version: you get "
            f"{new or OWN_VENV}, this version used {old or OWN_VENV}."
            + (f" To get the same build, rebuild it from commit {pinned['commit']} on the "
               "Environments page." if pinned.get("commit") else ""),
            builder_link=bool(pinned.get("commit")),
        )  # fmt: skip
    return BuildCheck(SAME, f"You get the same build of {name!r}" + (f" ({old})." if old else "."))


@dataclass(frozen=True)
class ServerDecision:
    action: str  # START, REUSE, OTHER or BUSY
    message: str = ""


def server_decision(
    server: dict[str, Any] | None, running_environment: str | None, environment: str
) -> ServerDecision:
    """What "Open" does with the reader's default server (``server``: its model from the
    hub, None when they have none; ``running_environment``: the environment it runs)."""
    if not server:
        return ServerDecision(START)
    if server.get("pending") or not server.get("ready"):
        return ServerDecision(
            BUSY,
            "Your server is starting or stopping; wait until it has, then open this version again.",
        )
    if running_environment == environment:
        return ServerDecision(REUSE)
    return ServerDecision(
        OTHER,
        f"Your server runs the environment {running_environment!r}; this version needs "
        f"{environment!r}. Stop your server on the hub's home page (nothing is stopped for "
        "you: save your work first), then open this version again.",
    )


def fetch_url(base_url: str, user: str, entry_id: int, number: int) -> str:
    """The reader's server's endpoint that copies version ``number`` and opens it."""
    query = urlencode({"entry": entry_id, "version": number})
    return f"{base_url}user/{quote(user, safe='')}/{FETCH_ENDPOINT}?{query}"


def spawn_url(
    base_url: str, user: str, environment: str, profile: str | None, next_url: str
) -> str:
    """The hub's spawn URL starting ``user``'s server with these options, then ``next_url``."""
    query = {"opt-environment": environment}
    if profile:
        query["opt-profile"] = profile
    query["next"] = next_url
    return f"{base_url}hub/spawn/{quote(user, safe='')}?{urlencode(query)}"
