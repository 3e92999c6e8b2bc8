"""The ``gitlab:`` section of ``kioskhub.yaml``: environments built by GitLab CI.

It lives beside the code it configures; ``kioskhub.hub.schema.site.Site`` includes it. Secrets
stay out
of the file where they can: KioskHub's own GitLab token is read from an environment variable
that the section names (``api_token_env``), never from the config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .paths import ConfigPath
from .section import Section

# The template ships with the image builder: kioskhub/image_builder/ci beside kioskhub/hub.
CI_TEMPLATE = (
    Path(__file__).resolve().parents[2] / "image_builder" / "ci" / "kioskhub-env.gitlab-ci.yml"
)
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")


class GitLabSettings(Section):
    """Building environments in the users' own GitLab CI (python-gitlab + a CI template)."""

    url: str | None = Field(
        None,
        description="Base URL of the GitLab instance, like https://gitlab.example.org. Empty: "
        "builds in GitLab CI are off.",
    )
    api_token_env: str = Field(
        "KIOSKHUB_GITLAB_TOKEN",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable that holds the access token of KioskHub's GitLab "
        "account (scope api). KioskHub reads registered projects, their pipelines and "
        "container registries with it; the token itself never goes in this file.",
    )
    trigger: Literal["api", "trigger-token"] = Field(
        "api",
        description="How KioskHub starts pipelines. api: with its own token (its account "
        "needs the Developer role in each registered project); trigger-token: with the "
        "pipeline trigger token that the user gives when registering the project (the "
        "account then needs only the Reporter role).",
    )
    webhook_secret: str | None = Field(
        None,
        min_length=24,
        description="Secret token that GitLab sends in X-Gitlab-Token with pipeline and job "
        "events; put the same value in each project's webhook. Empty: the webhook receiver "
        "refuses every request and builds are followed by polling alone.",
    )
    allowed_namespaces: tuple[str, ...] = Field(
        (),
        description="GitLab groups (full paths like lab/physics) whose projects, and the "
        "projects of their subgroups, may be registered. Empty: none may.",
    )
    max_webhook_bytes: int = Field(
        1024 * 1024,
        ge=4096,
        le=64 * 1024 * 1024,
        description="Largest webhook payload accepted, in bytes. The secret token is checked "
        "before the body is read, and a larger body is refused with 413.",
    )
    ci_builder: Literal["repo2docker", "kioskhub"] | None = Field(
        None,
        description="Which builder the CI template's pipelines that KioskHub starts use "
        "(passed as KIOSKHUB_BUILDER): repo2docker (runners that reach the internet) or "
        "kioskhub (KioskHub's container builder on a shell runner tagged 'kioskhub'). Empty: "
        "KioskHub passes none, and the project's or GitLab's CI/CD variables decide "
        "(repo2docker when none is set).",
    )
    ci_template: ConfigPath = Field(
        CI_TEMPLATE,
        description="The CI template that projects include to build their environment; the "
        "builder service serves this file.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"https?://[^/\s:@?#]+(:\d{1,5})?(/[^\s?#]*)?", value):
            raise ValueError("expected a URL like https://gitlab.example.org (scheme, host)")
        return value.rstrip("/")

    @field_validator("allowed_namespaces")
    @classmethod
    def _check_namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for namespace in value:
            if not NAMESPACE_PATTERN.fullmatch(namespace):
                raise ValueError(
                    f"{namespace!r} is not a GitLab group path; write it like lab or "
                    "lab/physics, without the host or slashes around it"
                )
        return value

    @model_validator(mode="after")
    def _template_exists(self) -> GitLabSettings:
        if not self.ci_template.is_file():
            raise ValueError(f"ci_template: no file at {self.ci_template}")
        return self


def api_token(settings: GitLabSettings, environ: Mapping[str, str] = os.environ) -> str | None:
    """KioskHub's own GitLab token, from the environment variable the settings name."""
    return environ.get(settings.api_token_env) or None
