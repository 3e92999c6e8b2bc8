"""Container registry lookups in GitLab: the image a pipeline pushed, and a user's own images.

The CI template pushes ``$CI_REGISTRY_IMAGE/kioskhub-env:$CI_COMMIT_SHA``: in GitLab's registry
API that is the repository named ``kioskhub-env`` of the project, with one tag per commit.
``GET /projects/:id/registry/repositories`` finds the repository and
``GET /projects/:id/registry/repositories/:repository_id/tags/:tag_name`` gives the tag's
``digest``, which pins the image.

``list_user_images`` runs with the user's own token (from GitLab sign-in), so it sees exactly
what GitLab lets that user see: projects they are a member of with at least the Reporter
role, which is what reading a private project's registry takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gitlab.exceptions

from .gitlab_connection import GitLabConnection, TokenKind

IMAGE_NAME = "kioskhub-env"
"""The registry repository below ``$CI_REGISTRY_IMAGE`` that the CI template pushes to."""
REPORTER = 20
"""GitLab's access level that may read a private project's container registry."""


@dataclass(frozen=True)
class BuiltImage:
    """An image in a GitLab registry: its tag reference and the digest that pins it."""

    ref: str
    digest: str
    tag: str
    project_id: int
    project_path: str
    created_at: str | None = None
    total_size: int | None = None

    @property
    def pinned_ref(self) -> str:
        """``registry/path/kioskhub-env:<tag>@sha256:...``: the tag, held to this digest."""
        return f"{self.ref}@{self.digest}"


async def image_for_commit(
    connection: GitLabConnection, project_id: int, sha: str, image_name: str = IMAGE_NAME
) -> BuiltImage | None:
    """The image the template pushed for commit ``sha`` of the project, or None if none is."""
    return await connection.call(_image_for_commit, connection.client, project_id, sha, image_name)


def _image_for_commit(client, project_id: int, sha: str, image_name: str) -> BuiltImage | None:
    project = client.projects.get(project_id)
    for repository in project.repositories.list(iterator=True):
        if repository.name != image_name:
            continue
        try:
            tag = repository.tags.get(sha)
        except gitlab.exceptions.GitlabGetError as error:
            if error.response_code == 404:
                return None
            raise
        return _built_image(tag.attributes, project.id, project.path_with_namespace)
    return None


async def list_user_images(
    connection: GitLabConnection,
    *,
    image_name: str = IMAGE_NAME,
    max_projects: int = 200,
    per_page: int = 100,
) -> list[BuiltImage]:
    """Every ``kioskhub-env`` tag in the projects the connection's user is a member of.

    Only projects where the user has the Reporter role or more are asked (GitLab's
    ``membership`` and ``min_access_level`` filters), at most ``max_projects`` of them, most
    recently active first. A project whose registry is off or closed to the user is skipped.
    """
    return await connection.call(
        _list_user_images, connection.client, image_name, max_projects, per_page
    )


def _list_user_images(client, image_name: str, max_projects: int, per_page: int):
    images: list[BuiltImage] = []
    projects = client.projects.list(
        membership=True,
        min_access_level=REPORTER,
        order_by="last_activity_at",
        per_page=per_page,
        iterator=True,
    )
    for count, project in enumerate(projects):
        if count >= max_projects:
            break
        try:
            repositories = list(project.repositories.list(tags=True, iterator=True))
        except gitlab.exceptions.GitlabListError as error:
            if error.response_code in (403, 404):
                continue
            raise
        for repository in repositories:
            if repository.name != image_name:
                continue
            for listed in repository.attributes.get("tags") or []:
                tag = repository.tags.get(listed["name"])
                images.append(_built_image(tag.attributes, project.id, project.path_with_namespace))
    return images


def _built_image(tag: Mapping[str, Any], project_id: int, project_path: str) -> BuiltImage:
    return BuiltImage(
        ref=tag["location"],
        digest=tag["digest"],
        tag=tag["name"],
        project_id=project_id,
        project_path=project_path,
        created_at=tag.get("created_at"),
        total_size=tag.get("total_size"),
    )


def gitlab_token_from_auth_state(auth_state: Mapping[str, Any] | None) -> str | None:
    """The user's GitLab OAuth access token from JupyterHub's ``auth_state``, if it holds one.

    oauthenticator's ``GitLabOAuthenticator`` (with ``enable_auth_state``) keeps it under
    ``access_token``.
    """
    if not auth_state:
        return None
    token = auth_state.get("access_token")
    return token if isinstance(token, str) and token else None


def user_connection(
    gitlab_url: str, token: str, *, token_kind: TokenKind = "oauth"
) -> GitLabConnection:
    """A connection that acts as the signed-in user (their token, their permissions)."""
    return GitLabConnection(gitlab_url, token, token_kind=token_kind)
