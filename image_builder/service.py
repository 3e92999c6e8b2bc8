"""The environment builder service: ``python -m kioskhub.image_builder.service`` (run by the hub).

On start it opens the catalog (``alembic upgrade head``), mirrors the site config's
environments into it (building those of kind ``repository``), queues again any build a
restart interrupted, and serves the REST API and the page below the service's prefix
(``/services/environments/``). State lives in the catalog; the process keeps only the running
builds and their live logs.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
from urllib.parse import urlsplit

from sqlalchemy import select
from tornado import web

from kioskhub.hub.schema.builder import (
    BuilderSettings,
    cache_dir,
    catalog_url,
    environments_dir,
    python_download_source,
)
from kioskhub.hub.schema.site import Site

from .build_identity import identity_pool
from .build_runner import BuildRunner
from .builder_base import EnvironmentBuilder
from .catalog import SITE_OWNER, EnvironmentRecord
from .catalog_db import Catalog, open_catalog
from .catalog_store import queue_build, sync_site_environments
from .container_builder import ContainerBuilder, find_engine
from .gitlab_service import gitlab_builders, gitlab_routes, public_webhook_url
from .gitlab_webhook import PipelineEventBus
from .hub_service import SERVICE_NAME
from .local_builder import LocalBuilder, site_toolchain
from .metrics_handler import metrics_routes
from .pinned_builds_api import pinned_build_routes
from .podman_image_builder import BuildOptions, PodmanImageBuilder
from .python_versions import effective_policy
from .service_api import BuilderState, api_routes
from .service_main import run_service, until_stopped
from .service_page import page_routes

log = logging.getLogger("kioskhub.environments")
SERVICE_PREFIX = f"/services/{SERVICE_NAME}/"


def make_builders(
    site: Site, catalog: Catalog, events: PipelineEventBus, prefix: str
) -> dict[str, EnvironmentBuilder]:
    """The builders this service runs: local always, container with podman (else repo2docker
    where its engine exists), GitLab CI where the site configured GitLab."""
    settings = site.builder
    state = site.hub.state_dir
    identities = identity_pool(settings)  # one pool: no two builds take one uid or group
    builders: dict[str, EnvironmentBuilder] = {
        "local": LocalBuilder(
            environments_dir=environments_dir(settings, state),
            cache_dir=cache_dir(settings, state),
            identities=identities,
            **site_toolchain(settings, state),
        )
    }
    if shutil.which("podman") and settings.base_image:
        builders["container"] = PodmanImageBuilder(
            container_build_options(settings),
            identities=identities,
            environments_dir=environments_dir(settings, state),
        )
    else:
        engine = find_engine()
        if engine.available:
            builders["container"] = ContainerBuilder(engine, identities=identity_pool(settings))
        else:
            log.info("Container builds are off: %s", engine.reason)
    builders.update(
        gitlab_builders(
            site.gitlab, catalog, events, webhook_url=public_webhook_url(site.hub.url, prefix)
        )
    )
    return builders


def container_build_options(settings: BuilderSettings) -> BuildOptions:
    """What the site allows container builds; the hub assembly fills in the base image."""
    return BuildOptions(
        base_image=settings.base_image,
        registry=settings.registry,
        registry_insecure=settings.registry_insecure,
        allow_dockerfile=settings.allow_dockerfile,
        network=settings.build_network,
        memory_mb=settings.build_memory_mb,
        timeout=settings.build_timeout,
        python_policy=effective_policy(settings.python_policy, python_download_source(settings)),
    )


def start_catalog(
    site: Site,
    runner_factory=BuildRunner,
    events: PipelineEventBus | None = None,
    prefix: str = SERVICE_PREFIX,
) -> tuple[Catalog, BuildRunner]:
    """Open and migrate the catalog, sync the site's environments and queue what needs it."""
    catalog = open_catalog(catalog_url(site.builder, site.hub.state_dir))
    builders = make_builders(site, catalog, events or PipelineEventBus(), prefix)
    runner = runner_factory(catalog, site.builder, builders)
    with catalog.session() as session:
        to_build = sync_site_environments(session, site.environments)
        new_builds = [queue_build(session, row) for row in to_build]
        session.flush()
        new_ids = [build.id for build in new_builds]
        private_venvs = session.scalars(
            select(EnvironmentRecord.venv_path).where(
                EnvironmentRecord.owner != SITE_OWNER, EnvironmentRecord.venv_path.is_not(None)
            )
        ).all()
    closed = builders["local"].close_private_venvs(private_venvs)
    if closed:
        log.info("Closed %d private environments of an earlier version to other accounts", closed)
    for name in runner.reconcile():
        log.info("Queued build %s again after a restart", name)
    for build_id in new_ids:
        runner.submit(build_id)
    return catalog, runner


def make_app(
    site: Site,
    catalog: Catalog,
    runner: BuildRunner,
    prefix: str,
    events: PipelineEventBus | None = None,
) -> web.Application:
    state = BuilderState(catalog, runner, site.builder, gitlab_url=site.gitlab.url)
    gitlab = gitlab_routes(prefix, site.gitlab, events) if events and site.gitlab.url else []
    return web.Application(
        api_routes(prefix, state)
        + pinned_build_routes(prefix, state)
        + page_routes(prefix, state)
        + metrics_routes(prefix)
        + gitlab,
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
        service_prefix=prefix,
    )


async def serve(site: Site) -> None:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", SERVICE_PREFIX)
    url = urlsplit(
        os.environ.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{site.builder.port}")
    )
    events = PipelineEventBus()
    catalog, runner = start_catalog(site, events=events, prefix=prefix)
    app = make_app(site, catalog, runner, prefix, events)
    # Handlers refuse bodies over their own limit before reading them (request_body.py);
    # this caps every other route, such as the page and its static files.
    largest = max(site.builder.max_request_bytes, site.gitlab.max_webhook_bytes)
    server = app.listen(
        url.port or site.builder.port, url.hostname or "127.0.0.1", max_body_size=largest
    )
    log.info("Environments service at %s (prefix %s)", url.geturl(), prefix)
    await until_stopped()
    server.stop()
    await runner.close()
    catalog.close()


def main(argv: list[str] | None = None) -> int:
    return run_service("python -m kioskhub.image_builder.service", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
