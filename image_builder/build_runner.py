"""Runs catalog builds: queue → builder → catalog, with the log saved as it grows.

``BuildRunner`` is the one place that connects the catalog, the bounded ``BuildQueue`` and the
builders. It re-checks every source against the site's current rules before a build starts
(the config may have changed since the environment was registered), records success or
failure through ``catalog_store``, and on start re-queues builds that a restart interrupted.

A build submitted with the asking user's ``GitCredentials`` keeps them in memory until that
build starts, and hands them to its ``BuildRequest``; they are dropped when it starts or ends,
and a build queued again after a restart has none (the user rebuilds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from kioskhub.hub.schema.builder import BuilderSettings

from . import build_metrics
from .build_log import BuildLog
from .build_queue import BuildQueue
from .builder_base import BuildFailed, BuildRequest, EnvironmentBuilder
from .catalog import SITE_OWNER, BuildRecord
from .catalog_db import Catalog
from .catalog_store import (
    finish_failed,
    finish_ready,
    save_progress,
    start_build,
    unfinished_builds,
)
from .git_credentials import GitCredentials
from .source_safety import (
    RepositorySource,
    UnsafeSource,
    check_ref,
    check_repository_url,
    check_subdir,
)

log = logging.getLogger(__name__)
SAVE_INTERVAL = 1.0


def check_source(settings: BuilderSettings, url: str, *, trusted: bool = False) -> RepositorySource:
    """``url`` under the site's rules; ``trusted`` (the site's own config) may use local paths."""
    hosts = settings.allowed_hosts
    if trusted and (host := urlsplit(url).hostname):
        hosts = (*hosts, host.lower())
    return check_repository_url(
        url,
        allowed_schemes=settings.allowed_schemes,
        allowed_hosts=hosts,
        allow_local_paths=settings.allow_local_paths or trusted,
    )


class BuildRunner:
    """Queues catalog builds and runs each with the builder its environment names."""

    def __init__(
        self,
        catalog: Catalog,
        settings: BuilderSettings,
        builders: Mapping[str, EnvironmentBuilder],
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.builders = dict(builders)
        self._credentials: dict[int, GitCredentials] = {}
        self.queue = BuildQueue(
            self._run,
            self._fail,
            concurrency=settings.concurrency,
            timeout=settings.build_timeout,
        )
        self._started: dict[int, tuple[str, float]] = {}
        build_metrics.count_queue(lambda: self.queue.pending)

    # ---- requests -----------------------------------------------------------------------

    def submit(self, build_id: int, credentials: GitCredentials | None = None) -> BuildLog:
        """Queue a build; ``credentials`` (the asking user's) serve that build alone."""
        if credentials is not None:
            self._credentials[build_id] = credentials
        try:
            return self.queue.submit(build_id)
        except Exception:
            self._credentials.pop(build_id, None)
            raise

    def cancel(self, build_id: int) -> bool:
        return self.queue.cancel(build_id)

    def log_of(self, build_id: int) -> BuildLog | None:
        return self.queue.log_of(build_id)

    def reconcile(self) -> list[int]:
        """Queue again every build that a stopped builder left queued or building."""
        with self.catalog.session() as session:
            ids = [build.id for build in unfinished_builds(session)]
        for build_id in ids:
            self.submit(build_id)
        return ids

    async def close(self) -> None:
        await self.queue.close()

    # ---- one build ------------------------------------------------------------------------

    async def _run(self, build_id: int, build_log: BuildLog) -> None:
        credentials = self._credentials.pop(build_id, None)
        build_log.max_bytes = self.settings.build_log_mb * 1024 * 1024
        with self.catalog.session() as session:
            build = session.get(BuildRecord, build_id)
            if build is None:
                return
            row = build.environment
            start_build(session, build)
            owner, name, builder_name = row.owner, row.name, row.builder
            url, ref, subdir = row.repo_url, build.ref, row.subdir
        build_log.progress(1, f"Build {build_id} of {owner}/{name} with the {builder_name} builder")
        self._started[build_id] = (builder_name, time.monotonic())
        builder = self.builders.get(builder_name)
        try:
            if builder is None:
                raise BuildFailed(
                    f"the {builder_name} builder is not available in this builder service"
                )
            request = BuildRequest(
                build_id=build_id,
                owner=owner,
                name=name,
                source=check_source(self.settings, url or "", trusted=owner == SITE_OWNER),
                ref=check_ref(ref),
                subdir=check_subdir(subdir),
                credentials=credentials,
            )
            saver = asyncio.create_task(self._keep_saving(build_id, build_log))
            try:
                artifact = await builder.build(request, build_log)
            finally:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
        except (BuildFailed, UnsafeSource) as error:
            build_log.line(f"Build failed: {error}")
            build_log.finish("failed")
            self._count(build_id, "failed")
            with self.catalog.session() as session:
                finish_failed(
                    session, session.get(BuildRecord, build_id), str(error), build_log.text()
                )
            return
        build_log.finish("ready")
        self._count(build_id, "ready")
        with self.catalog.session() as session:
            finish_ready(session, session.get(BuildRecord, build_id), artifact, build_log.text())

    async def _fail(self, build_id: int, build_log: BuildLog, message: str) -> None:
        self._credentials.pop(build_id, None)
        build_log.finish("failed")
        self._count(build_id, "stopped")
        with self.catalog.session() as session:
            build = session.get(BuildRecord, build_id)
            if build is not None and build.status not in ("ready", "failed"):
                finish_failed(session, build, message, build_log.text())

    def _count(self, build_id: int, result: str) -> None:
        """Count an ended build in the metrics (once; one never started has no builder)."""
        builder, started = self._started.pop(build_id, ("", time.monotonic()))
        build_metrics.record_build(builder, result, time.monotonic() - started)

    async def _keep_saving(self, build_id: int, build_log: BuildLog) -> None:
        """Write the growing log and progress to the catalog, for readers in other processes."""
        saved = -1
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            if len(build_log.lines) == saved:
                continue
            saved = len(build_log.lines)
            try:
                with self.catalog.session() as session:
                    build = session.get(BuildRecord, build_id)
                    if build is not None:
                        save_progress(
                            session, build, build_log.text(), build_log.percent, build_log.phase
                        )
            except Exception:  # a busy database must not fail the build
                log.warning("could not save the log of build %s", build_id, exc_info=True)
