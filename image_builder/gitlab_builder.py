"""The ``gitlab-ci`` builder: the GitLab CI path behind the ``EnvironmentBuilder`` contract.

``BuildRunner`` hands every builder a checked ``BuildRequest`` and a ``BuildLog``;
``GitLabCIBuilder.build`` turns that into a pipeline in the project's own GitLab CI and
returns the pushed image and its digest as an ``Artifact``, or raises ``BuildFailed`` with
the pipeline's log kept in the ``BuildLog``.

The pipeline of each catalog build is remembered in the build's ``builder_state`` (and in
``external_id`` / ``external_url``), through ``CatalogPipelineMemory``: when a restarted
builder service queues an unfinished build again, ``build`` follows the pipeline that is
already running instead of starting a second one. Cancelling a build cancels its pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Protocol

from .build_log import BuildLog
from .builder_base import Artifact, BuildFailed, BuildRequest, EnvironmentBuilder
from .catalog import BuildRecord
from .catalog_db import Catalog
from .catalog_store import builder_state, set_builder_state
from .git_credentials import GitCredentials
from .gitlab_access import build_refusal, traces_readable_by_anyone
from .gitlab_connection import GitLabError
from .gitlab_pipeline_variables import PipelineInputError, pipeline_request
from .gitlab_pipelines import (
    GitLabBuildOutcome,
    GitLabCIBuilds,
    GitLabProject,
    LogAppended,
    PipelineFinished,
    PipelineRun,
    PipelineStatusChanged,
)
from .source_safety import RepositorySource

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SECTION_MARKER = re.compile(r"section_(start|end):\d+:[A-Za-z0-9_.-]+(\[[^\]]*\])?\r?")
PROGRESS = {
    "created": (12, "Pipeline created in GitLab CI"),
    "waiting_for_resource": (14, "Waiting for a GitLab runner"),
    "preparing": (14, "Waiting for a GitLab runner"),
    "pending": (15, "Waiting for a GitLab runner"),
    "running": (30, "Building with repo2docker in GitLab CI"),
    "success": (90, "Pipeline succeeded; looking up the pushed image"),
}


def plain_trace(text: str) -> str:
    """A job trace without colour codes and GitLab's collapsible-section markers."""
    text = SECTION_MARKER.sub("", ANSI_ESCAPE.sub("", text))
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


class PipelineMemory(Protocol):
    """Where the builder keeps the pipeline of a catalog build across restarts."""

    def recall(self, build_id: int) -> PipelineRun | None: ...

    def remember(self, build_id: int, run: PipelineRun) -> None: ...


class CatalogPipelineMemory:
    """``PipelineMemory`` in the catalog: ``builder_state``, ``external_id``, ``external_url``."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def recall(self, build_id: int) -> PipelineRun | None:
        with self.catalog.session() as session:
            build = session.get(BuildRecord, build_id)
            state = builder_state(build).get("gitlab") if build is not None else None
        return PipelineRun(**state) if state else None

    def remember(self, build_id: int, run: PipelineRun) -> None:
        with self.catalog.session() as session:
            build = session.get(BuildRecord, build_id)
            if build is None:
                return
            state = builder_state(build)
            state["gitlab"] = {
                "project_id": run.project_id,
                "project_path": run.project_path,
                "pipeline_id": run.pipeline_id,
                "ref": run.ref,
                "sha": run.sha,
                "status": run.status,
                "web_url": run.web_url,
            }
            set_builder_state(build, state)
            build.external_id, build.external_url = run.external_id, run.web_url
            build.commit_sha = run.sha or build.commit_sha


class GitLabCIBuilder(EnvironmentBuilder):
    """Builds an environment in the registered project's own GitLab CI."""

    kind = "gitlab-ci"

    def __init__(
        self,
        builds: GitLabCIBuilds,
        *,
        memory: PipelineMemory | None = None,
        trigger_tokens: dict[str, str] | None = None,
        require_trigger_token: bool = False,
        webhook: tuple[str, str] | None = None,
        ci_builder: str = "",
    ):
        self.builds = builds
        self.ci_builder = ci_builder
        """KIOSKHUB_BUILDER for the pipelines it starts (``gitlab.ci_builder``); empty: none."""
        self.memory = memory
        self.trigger_tokens = trigger_tokens or {}
        """Pipeline trigger tokens by project path, for ``gitlab.trigger: trigger-token``."""
        self.require_trigger_token = require_trigger_token
        self.webhook = webhook
        """(URL, secret) of KioskHub's webhook receiver, added to projects that lack it."""

    async def check_registration(
        self, source: RepositorySource, credentials: GitCredentials | None = None
    ) -> None:
        """Refuse (BuildFailed) a project the hub user may not have built (gitlab_access);
        with ``credentials`` the user's own access was checked and the bot's rule is moot."""
        try:
            project = await self.builds.register_project(source.url)
        except (PipelineInputError, GitLabError) as error:
            raise BuildFailed(str(error)) from error
        refusal = build_refusal(project.path_with_namespace, project.visibility)
        if refusal and credentials is None:
            raise BuildFailed(refusal)

    async def build(self, request: BuildRequest, log: BuildLog) -> Artifact:
        run = self.memory.recall(request.build_id) if self.memory else None
        try:
            log.progress(5, "Resolving the GitLab project")
            project = await self.builds.register_project(request.source.url)
            refusal = build_refusal(project.path_with_namespace, project.visibility)
            if refusal and request.credentials is None:
                raise BuildFailed(refusal)
            if run is None:
                run = await self._start(request, project, log)
            else:
                log.line(f"Following pipeline {run.web_url} again")
            traces = traces_readable_by_anyone(project.visibility, project.public_jobs)
            if not traces:
                log.line(
                    f"The job logs are not copied here: GitLab shows them only to members of "
                    f"{project.path_with_namespace}; read them at {run.web_url}"
                )
            outcome = await self._follow(run, log, traces)
        except (PipelineInputError, GitLabError) as error:
            raise BuildFailed(str(error)) from error
        except asyncio.CancelledError:
            if run is not None:
                await self._cancel(run, log)
            raise
        if not outcome.succeeded:
            raise BuildFailed(outcome.error or f"the pipeline {outcome.pipeline_status}")
        image = outcome.image
        log.line(f"Image {image.ref}")
        log.line(f"Digest {image.digest}")
        return Artifact(commit_sha=outcome.run.sha, image_ref=image.ref, image_digest=image.digest)

    async def _start(
        self, request: BuildRequest, project: GitLabProject, log: BuildLog
    ) -> PipelineRun:
        ref = project.default_branch if request.ref in ("", "HEAD") else request.ref
        if not ref:
            raise BuildFailed(f"{project.path_with_namespace} has no default branch; give a ref")
        checked = pipeline_request(
            project.path_with_namespace,
            ref,
            request.subdir,
            gitlab_url=self.builds.connection.url,
            allowed_namespaces=self.builds.allowed_namespaces,
            builder=self.ci_builder,
        )
        if self.webhook is not None:
            if await self.builds.ensure_webhook(project, *self.webhook):
                log.line(f"The project's webhook reports to {self.webhook[0]}")
            else:
                log.line(
                    "KioskHub's GitLab account may not add webhooks to this project (that "
                    "takes the Maintainer role); following the pipeline by polling"
                )
        log.progress(10, f"Starting a pipeline for {project.path_with_namespace} at {ref}")
        token = self.trigger_tokens.get(project.path_with_namespace)
        if token is None and self.require_trigger_token:
            raise BuildFailed(
                f"this site starts pipelines with trigger tokens (gitlab.trigger), and none was "
                f"given for {project.path_with_namespace}; create one in the project's "
                "Settings > CI/CD > Pipeline trigger tokens and register it"
            )
        run = await self.builds.trigger(project, checked, trigger_token=token)
        log.line(f"Pipeline {run.web_url} (commit {run.sha})")
        if self.memory is not None:
            self.memory.remember(request.build_id, run)
        return run

    async def _follow(self, run: PipelineRun, log: BuildLog, traces: bool) -> GitLabBuildOutcome:
        pending = ""
        async for update in self.builds.follow(run):
            if isinstance(update, PipelineStatusChanged):
                percent, phase = PROGRESS.get(update.status, (30, f"Pipeline {update.status}"))
                log.progress(percent, phase)
            elif isinstance(update, LogAppended) and traces:
                lines = (pending + plain_trace(update.text)).split("\n")
                pending = lines.pop()
                for line in lines:
                    log.line(line)
            elif isinstance(update, PipelineFinished):
                if pending:
                    log.line(pending)
                return update.outcome
        raise BuildFailed("the pipeline could not be followed to its end")

    async def _cancel(self, run: PipelineRun, log: BuildLog) -> None:
        """Cancel the pipeline too (best effort; the build is being cancelled anyway)."""
        connection = self.builds.connection

        def cancel() -> None:
            project = connection.client.projects.get(run.project_id, lazy=True)
            project.pipelines.get(run.pipeline_id, lazy=True).cancel()

        with contextlib.suppress(GitLabError, OSError):
            await asyncio.shield(connection.call(cancel))
            log.line(f"Cancelled pipeline {run.web_url}")
