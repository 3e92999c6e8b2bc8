"""Pinned builds on request of the gallery: rebuild a commit an environment was built from.

A gallery version is pinned to an environment's build (content hash or image digest, and
its commit). When the environment has been rebuilt since, "Open" asks here for a build of
the pinned commit, kept beside the environment's own (``catalog_store.queue_pinned_build``):

- ``POST api/pinned-builds`` ``{"environment": <spawn name>, "commit": <sha>, "user":
  <reader>}`` queues (or reuses) it and grants ``user`` its launch; ``GET
  api/pinned-builds/<id>?user=<reader>`` follows it.

Only a service token holding ``PINNED_BUILDS_SCOPE`` may call either (the gallery's alone:
``hub/gallery/hub_service.py``); a user's token or cookie gets 403. The reader must be able
to see the environment (404 otherwise, as for any environment they may not see), and only a
commit a ready build of that environment was built from is accepted (403): a reader never
makes the builder fetch anything its owner did not build. The build fetches as a rebuild by
its owner would: a repository on the site's GitLab with the owner's own GitLab token.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from tornado import web

from .build_runner import check_source
from .builder_base import BuildFailed
from .catalog import SITE_OWNER, BuildRecord, EnvironmentRecord, PinGrant, pinned_choice_name
from .catalog_access import Viewer, can_see
from .catalog_store import NotFound, check_queue_room, queue_pinned_build
from .hub_service import PINNED_BUILDS_SCOPE
from .service_api import APIHandler
from .user_gitlab_credentials import hub_user_model, user_credentials

COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def requires_pinned_builds_scope(method):
    """Declare (and check) that only a service token with ``PINNED_BUILDS_SCOPE`` may call."""

    @functools.wraps(method)
    async def wrapper(self: APIHandler, *args):
        model = self.get_current_user()
        if not model:
            raise web.HTTPError(403, "sign in to the hub, or send an API token")
        scopes = model.get("scopes") or ()
        if model.get("kind") != "service" or PINNED_BUILDS_SCOPE not in scopes:
            raise web.HTTPError(
                403, f"pinned builds are asked for by the gallery alone ({PINNED_BUILDS_SCOPE})"
            )
        return await method(self, *args)

    wrapper.permission = PINNED_BUILDS_SCOPE
    return wrapper


class PinnedBuildHandlerBase(APIHandler):
    async def reader(self, name: Any) -> Viewer:
        if not isinstance(name, str) or not name or len(name) > 255:
            raise web.HTTPError(400, "name the reader the pinned build is for ('user')")
        model = await hub_user_model(self.hub_auth, quote(name, safe=""))
        return Viewer(name, frozenset(model.get("groups") or ()), bool(model.get("admin")))

    def describe(self, build: BuildRecord) -> dict[str, Any]:
        identity = build.content_hash or build.image_digest
        row = build.environment
        return {
            "id": build.id,
            "environment": row.spawn_name,
            "commit": build.ref,
            "status": build.status,
            "phase": build.phase,
            "progress": build.progress,
            "error": build.error,
            "content_hash": build.content_hash,
            "image_digest": build.image_digest,
            "spawn_name": pinned_choice_name(identity)
            if build.status == "ready" and identity
            else None,
        }


class PinnedBuildsHandler(PinnedBuildHandlerBase):
    @requires_pinned_builds_scope
    async def post(self):
        body = self.body()
        commit = str(body.get("commit") or "")
        if not COMMIT.fullmatch(commit):
            raise web.HTTPError(400, "'commit' must be a full commit SHA (40 or 64 hex digits)")
        viewer = await self.reader(body.get("user"))
        spawn_name = str(body.get("environment") or "")
        with self.state.catalog.session() as session:
            row = environment_by_spawn_name(session, spawn_name)
            if row is None or not can_see(row, viewer):
                raise NotFound(f"no environment {spawn_name!r} that {viewer.name} can see")
            owner, repo_url = row.owner, row.repo_url
            check_queue_room(session, owner, self.state.settings.max_queued_builds_per_user)
            build, new = queue_pinned_build(session, row, commit, viewer.name)
            build_id = build.id
            session.commit()
        if new:
            source = check_source(self.state.settings, repo_url or "", trusted=owner == SITE_OWNER)
            credentials = None
            if owner != SITE_OWNER:
                try:
                    credentials = await user_credentials(
                        self.hub_auth, owner, source, self.state.gitlab_url
                    )
                except BuildFailed as refused:
                    raise web.HTTPError(403, "%s", str(refused)) from None
            self.state.runner.submit(build_id, credentials)
        with self.state.catalog.session() as session:
            self.send(self.describe(session.get(BuildRecord, build_id)), 202 if new else 200)


class PinnedBuildHandler(PinnedBuildHandlerBase):
    @requires_pinned_builds_scope
    async def get(self, build_id: str):
        viewer = await self.reader(self.get_argument("user", ""))
        with self.state.catalog.session() as session:
            build = session.get(BuildRecord, int(build_id))
            granted = build is not None and session.scalar(
                select(PinGrant).where(
                    PinGrant.build_id == build.id, PinGrant.username == viewer.name
                )
            )
            if not granted or not can_see(build.environment, viewer):
                raise NotFound(f"no pinned build {build_id} for {viewer.name}")
            self.send(self.describe(build))


def environment_by_spawn_name(session, spawn_name: str) -> EnvironmentRecord | None:
    name = spawn_name.rpartition(".")[2]
    rows = session.scalars(select(EnvironmentRecord).where(EnvironmentRecord.name == name)).all()
    return next((r for r in rows if r.spawn_name == spawn_name), None)


def pinned_build_routes(prefix: str, state) -> list[tuple]:
    args = {"state": state}
    return [
        (rf"{prefix}api/pinned-builds/?", PinnedBuildsHandler, args),
        (rf"{prefix}api/pinned-builds/(\d+)", PinnedBuildHandler, args),
    ]
