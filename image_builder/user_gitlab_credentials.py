"""The asking user's own GitLab token for a build of a repository on the site's GitLab.

When a signed-in hub user registers or rebuilds a repository below ``gitlab.url``, the
service reads that user's ``auth_state`` from the hub's REST API (``GET /hub/api/users/{name}``
with the service's token, which holds ``admin:auth_state``), takes the GitLab OAuth token that
GitLab sign-in keeps there, and asks GitLab, with that token, how the user sees the project:
a user who may not read its code is refused before anything is recorded or run. The token
then travels with that one build as ``GitCredentials`` (memory only). Users without a GitLab
token (other sign-ins) build as before: public and internal projects only.
"""

from __future__ import annotations

import json
from typing import Any

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .builder_base import BuildFailed
from .git_credentials import GITLAB_TOKEN_USER, GitCredentials
from .gitlab_access import user_access_refusal
from .gitlab_connection import GitLabAuthError, GitLabError, GitLabForbidden, GitLabNotFound
from .gitlab_pipeline_variables import PipelineInputError, project_path_from_reference
from .gitlab_registry import gitlab_token_from_auth_state, user_connection
from .source_safety import RepositorySource


async def hub_user_model(hub_auth, name: str) -> dict[str, Any]:
    """The hub's model of user ``name``, as the service's own token may read it."""
    request = HTTPRequest(
        f"{hub_auth.api_url}/users/{name}",
        headers={"Authorization": f"token {hub_auth.api_token}"},
        request_timeout=20,
    )
    reply = await AsyncHTTPClient().fetch(request, raise_error=False)
    if reply.code != 200:
        raise web.HTTPError(502, f"the hub did not describe user {name!r} ({reply.code})")
    return json.loads(reply.body)


def site_gitlab_path(source: RepositorySource, gitlab_url: str | None) -> str | None:
    """The project path when ``source`` is a repository on the site's GitLab, else None."""
    if not gitlab_url or source.local_path is not None:
        return None
    try:
        return project_path_from_reference(source.url, gitlab_url)
    except PipelineInputError:
        return None


async def user_credentials(
    hub_auth, name: str, source: RepositorySource, gitlab_url: str | None
) -> GitCredentials | None:
    """User ``name``'s GitLab credentials for ``source`` once GitLab says they may read it.

    None when ``source`` is not on the site's GitLab or the user has no GitLab token;
    BuildFailed (a message for the user) when their token does not read the project.
    """
    path = site_gitlab_path(source, gitlab_url)
    if path is None:
        return None
    model = await hub_user_model(hub_auth, name)
    token = gitlab_token_from_auth_state(model.get("auth_state"))
    if token is None:
        return None
    connection = user_connection(gitlab_url, token)
    try:
        project = await connection.call(connection.client.projects.get, path)
        visibility = project.attributes.get("visibility")
        level = _access_level(project.attributes.get("permissions") or {})
    except GitLabNotFound:
        visibility, level = None, 0
    except GitLabAuthError:
        raise BuildFailed(
            "GitLab refused your sign-in token (it may have expired): sign out of KioskHub, "
            f"sign in with GitLab again, then register or rebuild {path}"
        ) from None
    except GitLabForbidden:
        raise BuildFailed(
            f"your GitLab sign-in may not read projects, so KioskHub cannot check {path} "
            "for you: the site's GitLab application needs the read_api scope; tell the site's "
            "admins"
        ) from None
    except GitLabError as error:
        raise BuildFailed(f"GitLab could not say whether you may read {path}: {error}") from None
    finally:
        connection.close()
    refusal = user_access_refusal(path, visibility, level)
    if refusal:
        raise BuildFailed(refusal)
    return GitCredentials(GITLAB_TOKEN_USER, token)


def _access_level(permissions: dict[str, Any]) -> int:
    """The higher of the user's project and group roles, as GitLab's project model gives them."""
    levels = [
        (permissions.get(kind) or {}).get("access_level") or 0
        for kind in ("project_access", "group_access")
    ]
    return max(levels)
