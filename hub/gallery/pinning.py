"""The environment a version is pinned to, asked of the hub and the build catalog, never
taken from the author.

The service's own token (``read:servers``) reads the ``user_options`` the author's running
server was started with: the environment and profile chosen in the spawn form or the API.
The environment is then looked up in the site config and, for environments the image
builder built, in its catalog (read-only): the image digest or the venv's content hash and
the commit it was built from.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.catalog import EnvironmentRecord
from kioskhub.image_builder.catalog_db import Catalog, has_schema
from kioskhub.spawner.launch_spec import ChoiceError, normalise_options, pick

log = logging.getLogger(__name__)


class NoRunningServer(Exception):
    """The author has no running server to take the pinning from (409)."""

    status = 409


async def server_options(hub_api_url: str, token: str, username: str, server: str = "") -> dict:
    """The ``user_options`` of ``username``'s running server ``server`` (default: ""), from
    the hub's REST API with the service's token."""
    reply = await AsyncHTTPClient().fetch(
        HTTPRequest(
            f"{hub_api_url}/users/{username}",
            headers={"Authorization": f"token {token}"},
            request_timeout=20,
        ),
        raise_error=False,
    )
    if reply.code != 200:
        raise RuntimeError(f"the hub did not describe user {username!r} ({reply.code})")
    model = (json.loads(reply.body).get("servers") or {}).get(server)
    if not model or not model.get("ready"):
        raise NoRunningServer(
            "publish from a running server: the gallery records the environment your server "
            "was started with, and you have none running. Start your server, run the "
            "notebook, then publish."
        )
    return model.get("user_options") or {}


def environment_name(site: Site, options: dict[str, Any], groups) -> tuple[str, str | None]:
    """The environment and profile names a server was started with (defaults filled in)."""
    try:
        chosen = normalise_options(options)
    except ChoiceError:
        chosen = {}
    name = chosen.get("environment")
    if name is None:
        try:
            name = pick("environment", site.environments, None, groups).name
        except ChoiceError:
            name = "unknown"
    profile = chosen.get("profile")
    if profile is None and site.profiles:
        try:
            profile = pick("profile", site.profiles, None, groups).name
        except ChoiceError:
            profile = None
    return name, profile


def pinning_for(site: Site, catalog: Catalog | None, name: str, profile: str | None) -> dict:
    """What pins environment ``name``: kind, image or folder, digest/content hash, commit.

    Blocking (reads the catalog): call it in a thread.
    """
    pinning: dict[str, Any] = {"environment": name, "profile": profile, "source": "unknown"}
    configured = next((env for env in site.environments if env.name == name), None)
    if configured is not None:
        pinning.update(
            source="site config",
            kind=configured.kind,
            image=configured.image,
            path=str(configured.path) if configured.path else None,
        )
    record = catalog_record(catalog, name)
    if record is not None:
        pinning.update(
            source="catalog",
            kind="venv" if record["venv_path"] else "image",
            image=record["image_ref"],
            digest=record["image_digest"],
            content_hash=record["content_hash"],
            commit=record["commit_sha"],
            repository=record["repo_url"],
        )
    return pinning


def catalog_record(catalog: Catalog | None, spawn_name: str) -> dict[str, Any] | None:
    """The catalog's last successful build of the environment launched as ``spawn_name``."""
    if catalog is None:
        return None
    owner_and_name = spawn_name.split(".", 1)
    try:
        if not has_schema(catalog.engine):
            return None
        with catalog.session() as session:
            rows = session.scalars(
                select(EnvironmentRecord).where(EnvironmentRecord.name == owner_and_name[-1])
            ).all()
            for row in rows:
                if row.spawn_name == spawn_name and row.launchable:
                    return {
                        "venv_path": row.venv_path,
                        "image_ref": row.image_ref,
                        "image_digest": row.image_digest,
                        "content_hash": row.content_hash,
                        "commit_sha": row.commit_sha,
                        "repo_url": row.repo_url,
                    }
    except SQLAlchemyError:
        log.warning("The environment catalog could not be read", exc_info=True)
    return None
