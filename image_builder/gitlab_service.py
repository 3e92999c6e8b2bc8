"""What the environments service mounts and runs for the GitLab CI path, from ``gitlab:``.

Two functions for ``kioskhub.image_builder.service`` (and ``public_webhook_url`` to pass
to the first):

- ``gitlab_builders(settings, catalog, events)``: ``{"gitlab-ci": GitLabCIBuilder}`` when
  ``gitlab.url`` is set and KioskHub's token is in the environment; ``{}`` otherwise, with the
  reason logged (like the container builder without an engine).
- ``gitlab_routes(prefix, settings, events)``: the webhook receiver at
  ``<prefix>webhooks/gitlab`` and the CI template at ``<prefix>ci/kioskhub-env.gitlab-ci.yml``.
  Neither asks for a hub sign-in: GitLab authenticates webhooks with the secret token, and
  the template is public (projects ``include:`` it by URL).

Both share one ``PipelineEventBus``, so a webhook wakes the builds that follow its pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from tornado.web import RequestHandler

from kioskhub.hub.schema.gitlab import GitLabSettings, api_token

from .builder_base import EnvironmentBuilder
from .catalog_db import Catalog
from .gitlab_builder import CatalogPipelineMemory, GitLabCIBuilder
from .gitlab_connection import GitLabConnection
from .gitlab_pipelines import GitLabCIBuilds
from .gitlab_webhook import PipelineEventBus, webhook_route

log = logging.getLogger("kioskhub.environments.gitlab")

WEBHOOK_PATH = "webhooks/gitlab"
TEMPLATE_PATH = "ci/kioskhub-env.gitlab-ci.yml"


def gitlab_builders(
    settings: GitLabSettings,
    catalog: Catalog,
    events: PipelineEventBus,
    environ: Mapping[str, str] = os.environ,
    *,
    webhook_url: str | None = None,
) -> dict[str, EnvironmentBuilder]:
    """The ``gitlab-ci`` builder, when the site configured GitLab and gave KioskHub a token.

    With ``webhook_url`` (see ``public_webhook_url``) and a ``webhook_secret``, the builder
    adds KioskHub's webhook to each project it builds, where its account may.
    """
    if not settings.url:
        return {}
    token = api_token(settings, environ)
    if not token:
        log.warning(
            "GitLab CI builds are off: set $%s to the token of KioskHub's GitLab account",
            settings.api_token_env,
        )
        return {}
    builds = GitLabCIBuilds(
        GitLabConnection(settings.url, token),
        allowed_namespaces=settings.allowed_namespaces,
        events=events,
    )
    builder = GitLabCIBuilder(
        builds,
        memory=CatalogPipelineMemory(catalog),
        require_trigger_token=settings.trigger == "trigger-token",
        ci_builder=settings.ci_builder or "",
        webhook=(webhook_url, settings.webhook_secret)
        if webhook_url and settings.webhook_secret
        else None,
    )
    return {GitLabCIBuilder.kind: builder}


def public_webhook_url(hub_url: str, prefix: str) -> str:
    """Where GitLab reaches the receiver: the hub's public URL and the service's prefix."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return f"{hub_url.rstrip('/')}{prefix}{WEBHOOK_PATH}"


class CITemplateHandler(RequestHandler):
    """``GET``: the CI template, for ``include: remote:`` in projects' .gitlab-ci.yml."""

    def initialize(self, template: str) -> None:
        self.template = template

    def get(self) -> None:
        with open(self.template, encoding="utf-8") as file:
            text = file.read()
        self.set_header("Content-Type", "text/yaml; charset=utf-8")
        self.finish(text)


def gitlab_routes(prefix: str, settings: GitLabSettings, events: PipelineEventBus) -> list:
    """Routing rules for the webhook receiver and the CI template (none when GitLab is off)."""
    if not settings.url:
        return []
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return [
        webhook_route(
            prefix + WEBHOOK_PATH, settings.webhook_secret, events, settings.max_webhook_bytes
        ),
        (prefix + TEMPLATE_PATH, CITemplateHandler, {"template": str(settings.ci_template)}),
    ]
