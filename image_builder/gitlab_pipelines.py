"""Builds in GitLab CI: register a project, start its pipeline, follow it to an image.

The flow, with python-gitlab at the I/O edge (``GitLabConnection``, which runs the
synchronous client in a thread executor so that this module stays async):

1. ``register_project``: resolve a project by path or URL, inside the allowed namespaces
   (checked before any request, and again on the resolved path, since GitLab follows
   renamed projects' old paths).
2. ``trigger``: ``POST /projects/:id/pipeline`` with the validated variables of a
   ``PipelineRequest``, or the project's trigger-token endpoint.
3. ``follow``: an async generator of ``BuildUpdate``s. It reads the pipeline, its jobs and
   the new part of each job's trace; then it sleeps until a webhook event for the pipeline
   wakes it or its poll delay runs out. The delay starts short, doubles while nothing
   changes (capped lower while a job is running, so the live log keeps flowing) and
   resets on any change. On a finished pipeline it looks up the pushed image and its digest
   in the registry and yields ``PipelineFinished`` with the outcome: the log is kept whether
   the pipeline succeeded or not.

GitLab's job trace API always returns the whole trace; ``TraceCursor`` keeps the offset that
was already streamed and decodes only what is new.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import gitlab.exceptions

from .gitlab_connection import GitLabConnection, GitLabNotFound
from .gitlab_pipeline_variables import (
    PipelineInputError,
    PipelineRequest,
    check_namespace_allowed,
    project_path_from_reference,
)
from .gitlab_registry import IMAGE_NAME, BuiltImage, image_for_commit
from .gitlab_webhook import PipelineEventBus

FINISHED_STATUSES = frozenset({"success", "failed", "canceled", "skipped"})
JOB_WITHOUT_TRACE = frozenset({"created", "pending", "waiting_for_resource", "manual", "scheduled"})


@dataclass(frozen=True)
class GitLabProject:
    """A registered GitLab project, as GitLab resolved it."""

    id: int
    path_with_namespace: str
    web_url: str
    http_url_to_repo: str
    default_branch: str | None
    visibility: str
    public_jobs: bool = False


@dataclass(frozen=True)
class PipelineRun:
    """A pipeline KioskHub started (or follows) for a project."""

    project_id: int
    project_path: str
    pipeline_id: int
    ref: str
    sha: str
    status: str
    web_url: str

    @property
    def external_id(self) -> str:
        """A stable name of the pipeline for the catalog: ``<project id>/<pipeline id>``."""
        return f"{self.project_id}/{self.pipeline_id}"


@dataclass(frozen=True)
class PipelineStatusChanged:
    """The pipeline or one of its jobs changed status."""

    status: str
    jobs: tuple[tuple[str, str], ...]
    """(job name, job status) for each job, in the order GitLab created them."""


@dataclass(frozen=True)
class LogAppended:
    """New text in a job's log."""

    job_id: int
    job_name: str
    text: str


@dataclass(frozen=True)
class GitLabBuildOutcome:
    """How a pipeline ended: its status, its whole log, and the image if one was pushed."""

    run: PipelineRun
    pipeline_status: str
    log: str
    image: BuiltImage | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.pipeline_status == "success" and self.image is not None


@dataclass(frozen=True)
class PipelineFinished:
    outcome: GitLabBuildOutcome


BuildUpdate = PipelineStatusChanged | LogAppended | PipelineFinished


@dataclass(frozen=True)
class FollowTimings:
    """Poll delays of ``follow`` in seconds; webhook events cut any delay short."""

    initial: float = 1.0
    maximum: float = 30.0
    maximum_while_running: float = 5.0
    timeout: float = 3600.0


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum`` and go back on ``reset``."""

    initial: float
    maximum: float
    factor: float = 2.0
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.initial

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * self.factor, self.maximum)
        return delay

    def reset(self) -> float:
        self.current = self.initial
        return self.next()


@dataclass
class TraceCursor:
    """What was already streamed of one job's trace (GitLab always sends all of it)."""

    offset: int = 0
    done: bool = False
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def advance(self, trace: bytes, final: bool = False) -> str:
        """The text of ``trace`` past the offset; a split UTF-8 character waits for the rest."""
        if len(trace) < self.offset:
            # The trace was erased or archived differently; start over rather than lose it.
            self.offset = 0
            self.decoder.reset()
        new = trace[self.offset :]
        self.offset = len(trace)
        self.done = final
        return self.decoder.decode(new, final=final)


class GitLabCIBuilds:
    """Registers GitLab projects, starts their pipelines and follows them to an image."""

    def __init__(
        self,
        connection: GitLabConnection,
        *,
        allowed_namespaces: tuple[str, ...] | list[str],
        events: PipelineEventBus | None = None,
        timings: FollowTimings = FollowTimings(),
        image_name: str = IMAGE_NAME,
    ):
        self.connection = connection
        self.allowed_namespaces = tuple(allowed_namespaces)
        self.events = events
        self.timings = timings
        self.image_name = image_name

    async def register_project(self, reference: str) -> GitLabProject:
        """The project named by ``reference`` (a path or URL) if the site may build it."""
        path = project_path_from_reference(reference, self.connection.url)
        check_namespace_allowed(path, self.allowed_namespaces)
        try:
            project = await self.connection.call(self.connection.client.projects.get, path)
        except GitLabNotFound as error:
            raise GitLabNotFound(
                f"no GitLab project {path!r} that KioskHub's account can see: check the path, "
                "and that the account is a member of the project (Reporter or more)",
                error.status,
            ) from error
        resolved = project.path_with_namespace
        if resolved.lower() != path.lower():
            check_namespace_allowed(resolved, self.allowed_namespaces)
        return GitLabProject(
            id=project.id,
            path_with_namespace=resolved,
            web_url=project.web_url,
            http_url_to_repo=project.http_url_to_repo,
            default_branch=project.attributes.get("default_branch"),
            visibility=project.attributes.get("visibility", "private"),
            public_jobs=bool(project.attributes.get("public_jobs", False)),
        )

    async def ensure_webhook(self, project: GitLabProject, url: str, secret: str) -> bool:
        """Add a webhook for pipeline and job events to ``url`` unless one is there.

        Needs the Maintainer role; returns False (and changes nothing) without it, in which
        case the project's maintainers add the webhook by hand, or builds rely on polling.
        """
        return await self.connection.call(
            _ensure_webhook, self.connection.client, project.id, url, secret
        )

    async def trigger(
        self,
        project: GitLabProject,
        request: PipelineRequest,
        *,
        trigger_token: str | None = None,
    ) -> PipelineRun:
        """Start a pipeline for ``request`` (with KioskHub's token, or a trigger token)."""
        if request.project_path.lower() != project.path_with_namespace.lower():
            raise PipelineInputError(
                "project",
                f"the request is for {request.project_path!r}, not for the registered "
                f"project {project.path_with_namespace!r}",
            )
        attributes = await self.connection.call(
            _create_pipeline, self.connection.client, project.id, request, trigger_token
        )
        return PipelineRun(
            project_id=project.id,
            project_path=project.path_with_namespace,
            pipeline_id=attributes["id"],
            ref=attributes.get("ref") or request.ref,
            sha=attributes.get("sha") or "",
            status=attributes.get("status") or "created",
            web_url=attributes.get("web_url") or "",
        )

    async def follow(self, run: PipelineRun) -> AsyncIterator[BuildUpdate]:
        """Updates of ``run`` until it finishes; the last one is ``PipelineFinished``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timings.timeout
        backoff = Backoff(self.timings.initial, self.timings.maximum)
        cursors: dict[int, TraceCursor] = {}
        log: list[str] = []
        last_seen: tuple | None = None
        with self._subscription(run) as wake:
            while True:
                pipeline, jobs = await self.connection.call(
                    _read_pipeline, self.connection.client, run.project_id, run.pipeline_id
                )
                changed = False
                seen = (pipeline["status"], tuple((job["name"], job["status"]) for job in jobs))
                if seen != last_seen:
                    last_seen, changed = seen, True
                    yield PipelineStatusChanged(status=seen[0], jobs=seen[1])
                for job in jobs:
                    text = await self._new_trace(run.project_id, job, cursors)
                    if text:
                        changed = True
                        log.append(text)
                        yield LogAppended(job_id=job["id"], job_name=job["name"], text=text)
                status = pipeline["status"]
                if status in FINISHED_STATUSES:
                    final_run = _with_status(run, pipeline)
                    yield PipelineFinished(await self._outcome(final_run, status, "".join(log)))
                    return
                if loop.time() >= deadline:
                    error = f"gave up following the pipeline after {self.timings.timeout:g} s"
                    yield PipelineFinished(
                        GitLabBuildOutcome(
                            _with_status(run, pipeline), status, "".join(log), error=error
                        )
                    )
                    return
                delay = backoff.reset() if changed or wake.is_set() else backoff.next()
                if any(job["status"] == "running" for job in jobs):
                    delay = min(delay, self.timings.maximum_while_running)
                await _sleep_or_wake(wake, min(delay, max(deadline - loop.time(), 0)))

    async def build(
        self,
        project: GitLabProject,
        request: PipelineRequest,
        *,
        trigger_token: str | None = None,
        on_update: Callable[[BuildUpdate], Any] | None = None,
    ) -> GitLabBuildOutcome:
        """Trigger and follow to the end; ``on_update`` sees every update on the way."""
        run = await self.trigger(project, request, trigger_token=trigger_token)
        async for update in self.follow(run):
            if on_update is not None:
                on_update(update)
            if isinstance(update, PipelineFinished):
                return update.outcome
        raise AssertionError("follow() ended without PipelineFinished")  # pragma: no cover

    def _subscription(self, run: PipelineRun) -> AbstractContextManager[asyncio.Event]:
        if self.events is None:
            return nullcontext(asyncio.Event())
        return self.events.subscribe(run.project_id, run.pipeline_id)

    async def _new_trace(self, project_id: int, job: dict, cursors: dict[int, TraceCursor]) -> str:
        cursor = cursors.setdefault(job["id"], TraceCursor())
        if cursor.done or job["status"] in JOB_WITHOUT_TRACE:
            return ""
        trace = await self.connection.call(
            _read_trace, self.connection.client, project_id, job["id"]
        )
        first = cursor.offset == 0
        text = cursor.advance(trace, final=job["status"] in FINISHED_STATUSES)
        if text and first:
            text = f"── job {job['name']} ({job.get('stage', '')}) ──\n{text}"
        return text

    async def _outcome(self, run: PipelineRun, status: str, log: str) -> GitLabBuildOutcome:
        if status != "success":
            return GitLabBuildOutcome(
                run, status, log, error=f"the pipeline {status}: {run.web_url}"
            )
        image = await image_for_commit(self.connection, run.project_id, run.sha, self.image_name)
        if image is None:
            error = (
                f"the pipeline succeeded but pushed no {self.image_name}:{run.sha} to the "
                "project's container registry; does .gitlab-ci.yml include KioskHub's CI "
                "template?"
            )
            return GitLabBuildOutcome(run, status, log, error=error)
        return GitLabBuildOutcome(run, status, log, image=image)


def _with_status(run: PipelineRun, pipeline: dict) -> PipelineRun:
    return PipelineRun(
        project_id=run.project_id,
        project_path=run.project_path,
        pipeline_id=run.pipeline_id,
        ref=pipeline.get("ref") or run.ref,
        sha=pipeline.get("sha") or run.sha,
        status=pipeline["status"],
        web_url=pipeline.get("web_url") or run.web_url,
    )


async def _sleep_or_wake(wake: asyncio.Event, delay: float) -> None:
    try:
        await asyncio.wait_for(wake.wait(), delay)
    except TimeoutError:
        pass
    wake.clear()


# The blocking halves, run through GitLabConnection.call in a thread executor.


def _create_pipeline(client, project_id: int, request: PipelineRequest, trigger_token: str | None):
    project = client.projects.get(project_id, lazy=True)
    if trigger_token:
        pipeline = project.trigger_pipeline(
            request.ref, trigger_token, variables=request.variable_mapping()
        )
    else:
        pipeline = project.pipelines.create({"ref": request.ref, "variables": request.variables()})
    return dict(pipeline.attributes)


def _read_pipeline(client, project_id: int, pipeline_id: int) -> tuple[dict, list[dict]]:
    project = client.projects.get(project_id, lazy=True)
    pipeline = project.pipelines.get(pipeline_id)
    jobs = [
        dict(job.attributes) for job in pipeline.jobs.list(iterator=True, include_retried=False)
    ]
    jobs.sort(key=lambda job: job["id"])
    return dict(pipeline.attributes), jobs


def _read_trace(client, project_id: int, job_id: int) -> bytes:
    project = client.projects.get(project_id, lazy=True)
    return project.jobs.get(job_id, lazy=True).trace()


def _ensure_webhook(client, project_id: int, url: str, secret: str) -> bool:
    project = client.projects.get(project_id, lazy=True)
    try:
        for hook in project.hooks.list(iterator=True):
            if hook.url == url and hook.pipeline_events and hook.job_events:
                return True
        project.hooks.create(
            {
                "url": url,
                "token": secret,
                "pipeline_events": True,
                "job_events": True,
                "push_events": False,
                "enable_ssl_verification": url.startswith("https://"),
            }
        )
    except (gitlab.exceptions.GitlabListError, gitlab.exceptions.GitlabCreateError) as error:
        if error.response_code == 403:
            return False
        raise
    return True
