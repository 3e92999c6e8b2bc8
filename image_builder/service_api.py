"""The builder service's REST API: environments, builds, live logs. Authorization per handler.

Every handler method says who may call it with ``@requires(...)``:

- ``"user"``: any signed-in hub user (OAuth cookie or an API token with access to the service);
- ``"see"``: a user who may see environment ``<id>`` (owner, shared group, site-wide, admin);
- ``"manage"``: its owner or an admin (site environments: admins only).

A temporary reviewer seat (hub user ``rv-…``) is none of these: it launches the one version
its reviewer link opens, through the gallery, and every route here answers it 403
(``refuse_seat``), so it cannot register, build or list environments.

An environment that a user may not see answers 404, as one that does not exist. Registering
or rebuilding a repository on the site's GitLab checks the asking user's own access with their
GitLab token first (``user_gitlab_credentials``), and that build alone fetches with it. The
routing table is at the end of the module.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from sqlalchemy.orm import Session
from tornado import web
from tornado.iostream import StreamClosedError

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.hub.schema.gallery import SEAT_PREFIX

from .build_queue import QueueFull
from .build_runner import BuildRunner, check_source
from .builder_base import BuildFailed
from .catalog import SITE_OWNER, BuildRecord, EnvironmentRecord
from .catalog_access import Viewer, can_manage, can_share_with
from .catalog_db import Catalog
from .catalog_store import (
    CatalogError,
    NotFound,
    check_queue_room,
    delete,
    get_visible,
    queue_build,
    register,
    set_visibility,
    visible,
)
from .git_credentials import GitCredentials
from .openapi import openapi_document
from .request_body import LimitedBody
from .service_auth import TokenOrCookie
from .source_safety import RepositorySource, UnsafeSource, check_ref, check_subdir
from .user_gitlab_credentials import hub_user_model, user_credentials


class BuilderState:
    """What every handler shares: the catalog, the runner, the settings, the site's GitLab."""

    def __init__(
        self,
        catalog: Catalog,
        runner: BuildRunner,
        settings: BuilderSettings,
        gitlab_url: str | None = None,
    ):
        self.catalog = catalog
        self.runner = runner
        self.settings = settings
        self.gitlab_url = gitlab_url


def requires(permission: str):
    """Declare who may call a handler method: 'user', 'see' or 'manage' (see the module doc).

    'see' and 'manage' methods receive ``(viewer, session, row)``; 'user' ones ``(viewer,)``.
    """

    def decorate(method):
        @functools.wraps(method)
        async def wrapper(self: APIHandler, *args):
            viewer = await self.viewer()
            if permission == "user":
                return await method(self, viewer, *args)
            environment_id, rest = int(args[0]), args[1:]
            with self.state.catalog.session() as session:
                row = get_visible(session, environment_id, viewer)
                if permission == "manage" and not can_manage(row, viewer):
                    raise web.HTTPError(403, f"only the owner of {row.name!r} or an admin may")
                return await method(self, viewer, session, row, *rest)

        wrapper.permission = permission
        return wrapper

    return decorate


class APIHandler(TokenOrCookie, LimitedBody):
    """JSON in and out; errors as {"status", "message"}; never redirects to a login page.

    Bodies over ``builder.max_request_bytes`` are refused with 413 (``request_body``).
    """

    def initialize(self, state: BuilderState) -> None:
        self.state = state
        self.body_limit = state.settings.max_request_bytes

    async def viewer(self) -> Viewer:
        model = self.hub_user("only hub users have environments")
        refuse_seat(model["name"])
        return await hub_viewer(self.hub_auth, model["name"])

    async def credentials(self, viewer: Viewer, source: RepositorySource) -> GitCredentials | None:
        """The viewer's own GitLab credentials for ``source`` (403 when they may not read it)."""
        try:
            return await user_credentials(self.hub_auth, viewer.name, source, self.state.gitlab_url)
        except BuildFailed as refused:
            raise web.HTTPError(403, "%s", str(refused)) from None

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body_bytes or b"{}")
        except json.JSONDecodeError as error:
            raise web.HTTPError(400, f"the body is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return data

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs) -> None:
        message = self._reason
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        elif isinstance(error, CatalogError | UnsafeSource | ValueError | QueueFull):
            message = str(error)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def _handle_request_exception(self, error: BaseException) -> None:
        if isinstance(error, CatalogError | UnsafeSource | ValueError | QueueFull):
            status = getattr(error, "status", 429 if isinstance(error, QueueFull) else 400)
            error = web.HTTPError(status, "%s", str(error))
        super()._handle_request_exception(error)

    def env_dict(self, row: EnvironmentRecord) -> dict[str, Any]:
        data = row.to_dict()
        base = self.state_prefix
        data["links"] = {
            "self": f"{base}api/environments/{row.id}",
            "log": f"{base}api/environments/{row.id}/log",
            "launch": f"/hub/spawn?environment={row.spawn_name}" if row.launchable else None,
        }
        return data

    @property
    def state_prefix(self) -> str:
        return self.hub_auth.base_url if hasattr(self.hub_auth, "base_url") else "/"


SEAT_REFUSAL = (
    "a temporary reviewer seat launches only the gallery version it was opened for; it may "
    "not register, build or list environments (ask the lab for an account to do that)"
)


def refuse_seat(name: str) -> None:
    """403 for a temporary reviewer seat (``rv-…``): it uses environments only by launching."""
    if name.startswith(SEAT_PREFIX):
        raise web.HTTPError(403, SEAT_REFUSAL)


async def hub_viewer(hub_auth, name: str) -> Viewer:
    """The user's admin flag and groups, from the hub's API with the service's own token."""
    model = await hub_user_model(hub_auth, name)
    return Viewer(name, frozenset(model.get("groups") or ()), bool(model.get("admin")))


class EnvironmentsHandler(APIHandler):
    @requires("user")
    async def get(self, viewer: Viewer):
        with self.state.catalog.session() as session:
            self.send({"environments": [self.env_dict(r) for r in visible(session, viewer)]})

    @requires("user")
    async def post(self, viewer: Viewer):
        body = self.body()
        settings = self.state.settings
        source = check_source(settings, str(body.get("repository") or ""))
        visibility = body.get("visibility") or "private"
        if not can_share_with(viewer, visibility):
            raise web.HTTPError(403, f"you may not share with {visibility!r}; use your own groups")
        builder = body.get("builder") or settings.default_builder
        if builder not in self.state.runner.builders:
            raise web.HTTPError(
                400,
                f"the {builder} builder is not available here; use one of "
                f"{', '.join(self.state.runner.builders)}",
            )
        credentials = await self.credentials(viewer, source)
        try:
            await self.state.runner.builders[builder].check_registration(source, credentials)
        except BuildFailed as refused:
            raise web.HTTPError(403, "%s", str(refused)) from None
        with self.state.catalog.session() as session:
            check_queue_room(session, viewer.name, settings.max_queued_builds_per_user)
            row, build = register(
                session,
                owner=viewer.name,
                name=str(body.get("name") or ""),
                repo_url=source.url,
                ref=check_ref(body.get("ref")),
                subdir=check_subdir(body.get("subdir")),
                builder=builder,
                visibility=visibility,
                display_name=str(body.get("display_name") or "")[:200],
                description=str(body.get("description") or "")[:2000],
            )
            build_id = build.id
        self.state.runner.submit(build_id, credentials)
        with self.state.catalog.session() as session:
            self.send(self.env_dict(session.get(EnvironmentRecord, row.id)), 201)


class EnvironmentHandler(APIHandler):
    @requires("see")
    async def get(self, viewer: Viewer, session: Session, row: EnvironmentRecord):
        data = self.env_dict(row)
        data["builds"] = [b.to_dict(with_log=False) for b in row.builds]
        self.send(data)

    @requires("manage")
    async def delete(self, viewer: Viewer, session: Session, row: EnvironmentRecord):
        if row.owner == SITE_OWNER:
            raise web.HTTPError(
                400, f"{row.name!r} comes from the site config; remove it there instead"
            )
        for build in row.builds:
            self.state.runner.cancel(build.id)
        delete(session, row)
        self.set_status(204)
        self.finish()


class RebuildHandler(APIHandler):
    @requires("manage")
    async def post(self, viewer: Viewer, session: Session, row: EnvironmentRecord):
        if row.builder == "site":
            raise web.HTTPError(400, f"{row.name!r} is a site environment; nothing to build")
        body = self.body()
        source = check_source(
            self.state.settings, row.repo_url or "", trusted=row.owner == SITE_OWNER
        )
        credentials = await self.credentials(viewer, source)
        check_queue_room(
            session, row.owner, self.state.settings.max_queued_builds_per_user, viewer.name
        )
        if body.get("ref"):
            row.ref = check_ref(body["ref"])
        build = queue_build(session, row)
        session.commit()
        self.state.runner.submit(build.id, credentials)
        self.send(self.env_dict(row), 202)


class CancelHandler(APIHandler):
    @requires("manage")
    async def post(self, viewer: Viewer, session: Session, row: EnvironmentRecord):
        running = [b for b in row.builds if b.status in ("queued", "building")]
        cancelled = [b.id for b in running if self.state.runner.cancel(b.id)]
        self.send({"cancelled": cancelled})


class VisibilityHandler(APIHandler):
    @requires("manage")
    async def put(self, viewer: Viewer, session: Session, row: EnvironmentRecord):
        visibility = str(self.body().get("visibility") or "")
        if row.owner == SITE_OWNER:
            raise web.HTTPError(400, "site environments are shared through the site config")
        if not can_share_with(viewer, visibility):
            raise web.HTTPError(403, f"you may not share with {visibility!r}; use your own groups")
        set_visibility(session, row, visibility)
        self.send(self.env_dict(row))


class BuildHandler(APIHandler):
    @requires("see")
    async def get(self, viewer: Viewer, session: Session, row: EnvironmentRecord, build_id):
        build = session.get(BuildRecord, int(build_id))
        if build is None or build.environment_id != row.id:
            raise NotFound(f"no build {build_id} of environment {row.id}")
        self.send(build.to_dict())


class LogHandler(APIHandler):
    """The latest build's log: Server-Sent Events that follow it live, or text/plain."""

    @requires("see")
    async def get(self, viewer: Viewer, session: Session, row: EnvironmentRecord):
        if not row.own_builds:
            raise NotFound(f"{row.name!r} has no builds")
        build = row.own_builds[-1]
        build_id, status, text, error = build.id, build.status, build.log, build.error
        progress, phase = build.progress, build.phase
        session.close()
        live = self.state.runner.log_of(build_id)
        if "text/event-stream" not in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(live.text() if live is not None else text)
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        if live is None:
            for number, line in enumerate(text.splitlines()):
                self.event({"line": line, "n": number})
            self.event(
                {
                    "done": True,
                    "status": status,
                    "error": error,
                    "progress": progress,
                    "phase": phase,
                }
            )
            await self.flush()
            self.finish()
            return
        await self.follow(build_id, live)

    def event(self, data: dict) -> None:
        self.write(f"data: {json.dumps(data)}\n\n")

    async def follow(self, build_id: int, live) -> None:
        seen = int(self.request.headers.get("Last-Event-ID", 0) or 0)
        try:
            while True:
                lines = live.lines[seen:]
                for offset, line in enumerate(lines):
                    self.event(
                        {
                            "line": line,
                            "n": seen + offset,
                            "progress": live.percent,
                            "phase": live.phase,
                        }
                    )
                seen += len(lines)
                if live.finished:
                    break
                if not lines:
                    self.write(": keep-alive\n\n")
                await self.flush()
                await live.wait(seen)
            with self.state.catalog.session() as session:
                build = session.get(BuildRecord, build_id)
                status = build.status if build else live.status
                error = build.error if build else None
            self.event(
                {
                    "done": True,
                    "status": status,
                    "error": error,
                    "progress": live.percent,
                    "phase": live.phase,
                }
            )
            await self.flush()
            self.finish()
        except (StreamClosedError, asyncio.CancelledError):
            return


class OpenAPIHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(openapi_document(self.settings["service_prefix"])))


def api_routes(prefix: str, state: BuilderState) -> list[tuple]:
    """The routing table of the API, below the service's URL prefix."""
    env = rf"{prefix}api/environments/(\d+)"
    args = {"state": state}
    return [
        (rf"{prefix}api/environments/?", EnvironmentsHandler, args),
        (rf"{env}/?", EnvironmentHandler, args),
        (rf"{env}/rebuild", RebuildHandler, args),
        (rf"{env}/cancel", CancelHandler, args),
        (rf"{env}/visibility", VisibilityHandler, args),
        (rf"{env}/log", LogHandler, args),
        (rf"{env}/builds/(\d+)", BuildHandler, args),
        (rf"{prefix}api/openapi.json", OpenAPIHandler),
    ]
