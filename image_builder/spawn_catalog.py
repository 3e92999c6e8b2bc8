"""The catalog as the spawner sees it: ready environments as ``Environment`` choices for a user.

The spawner does not know about builds, nor this package about spawners. The hub assembly
sets ``CatalogEnvironments`` as the spawner's ``environments_for_user``: awaited, it reads
the catalog in a worker thread (never on the hub's event loop) and returns the config's
environments (those of kind ``repository`` replaced by their built venv or image, once
built) plus the user's own and shared catalog environments, each pinned to the commit of
its last successful build, with the repository's files kept at that commit (in a venv, or
beside the environments for an image: ``repository_files``). A user the gallery asked a
pinned build for (``pinned_builds_api``) is offered that build too, as ``pin-<hash>``, while
they may still see its environment; no one else is.
Everything after that (the form, the choice, the LaunchSpec, the launch) is the spawner's
ordinary path.

With GitLab sign-in, ``GitLabUserImages`` wraps that reader and adds the images that the
user's own GitLab projects built with the CI template, listed with the user's own token
(from the auth state), pinned by digest. If GitLab cannot list them, the form says so in a
note and offers everything else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from kioskhub.hub.schema.builder import catalog_url, environments_dir
from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site

from .catalog import SITE_OWNER, BuildRecord, EnvironmentRecord, pinned_choice_name
from .catalog_access import Viewer, can_see
from .catalog_db import Catalog, has_schema, open_catalog
from .catalog_store import pinned_builds_for
from .gitlab_connection import GitLabAuthError, GitLabError
from .gitlab_registry import BuiltImage, gitlab_token_from_auth_state, list_user_images
from .gitlab_registry import user_connection as gitlab_user_connection
from .repository_files import folder_name, image_files_holder, is_kept, kept_source

log = logging.getLogger(__name__)


def open_reader(site: Site) -> Catalog | None:
    """The catalog for reading (never created or migrated here), or None when builds are off."""
    if not site.builder.enabled:
        return None
    return open_catalog(catalog_url(site.builder, site.hub.state_dir), migrate=False)


class CatalogEnvironments:
    """``await CatalogEnvironments(site)(site, username, groups)``: what the user may launch.

    The catalog is opened on first use, in the worker thread, and kept: one reader (and one
    connection pool) serves every spawner of the hub.
    """

    def __init__(self, site: Site) -> None:
        self._site = site
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    def __deepcopy__(self, memo) -> CatalogEnvironments:
        """Shared, not copied, when traitlets copies the config for each spawner."""
        return self

    async def __call__(
        self, site: Site, username: str, groups: Iterable[str], auth_state=None
    ) -> tuple[Environment, ...]:
        return await asyncio.to_thread(self.read, site, username, tuple(groups))

    def read(self, site: Site, username: str, groups: tuple[str, ...]) -> tuple[Environment, ...]:
        with self._lock:
            if self._catalog is None:
                self._catalog = open_reader(self._site)
        return site_for_user(site, username, groups, self._catalog).environments


def site_for_user(
    site: Site, username: str, groups: Iterable[str], catalog: Catalog | None
) -> Site:
    """``site`` with the environments that ``username`` may launch from the catalog."""
    if catalog is None:
        return site
    environments = environments_for(site, username, groups, catalog)
    return site.model_copy(update={"environments": environments})


def environments_for(
    site: Site, username: str, groups: Iterable[str], catalog: Catalog
) -> tuple[Environment, ...]:
    """The site's environments, resolved, then the user's launchable catalog environments."""
    database = catalog.engine.url.database
    if catalog.engine.url.get_backend_name() == "sqlite" and database:
        if not Path(database).exists():  # the service has not made it yet; do not create it
            return site.environments
    try:
        if not has_schema(catalog.engine):
            return site.environments
        with catalog.session() as session:
            rows = session.scalars(select(EnvironmentRecord).order_by(EnvironmentRecord.id)).all()
    except SQLAlchemyError:
        log.warning("The environment catalog could not be read", exc_info=True)
        return site.environments
    viewer = Viewer(username, frozenset(groups))
    by_site_name = {row.name: row for row in rows if row.owner == SITE_OWNER}
    files_root = environments_dir(site.builder, site.hub.state_dir)
    resolved = [
        _resolve_site(env, by_site_name.get(env.name), files_root) for env in site.environments
    ]
    own_and_shared = [
        _as_choice(row, files_root)
        for row in rows
        if row.owner != SITE_OWNER and row.launchable and can_see(row, viewer)
    ]
    return tuple(resolved + own_and_shared + pinned_for(catalog, viewer, files_root))


def pinned_for(catalog: Catalog, viewer: Viewer, files_root: Path) -> list[Environment]:
    """The ready pinned builds granted to ``viewer`` whose environment they may still see
    ([] when the catalog cannot say: the other environments are offered all the same)."""
    choices: dict[str, Environment] = {}
    try:
        with catalog.session() as session:
            for build in pinned_builds_for(session, viewer.name):
                identity = build.content_hash or build.image_digest
                artifact = build.venv_path or build.image_ref
                if identity and artifact and can_see(build.environment, viewer):
                    choice = _pinned_choice(build, files_root)
                    choices.setdefault(choice.name, choice)
    except SQLAlchemyError:
        log.warning("The pinned builds of the catalog could not be read", exc_info=True)
    return list(choices.values())


def _resolve_site(
    environment: Environment, row: EnvironmentRecord | None, files_root: Path
) -> Environment:
    """A config environment of kind repository becomes its built venv (or image), once built."""
    if environment.kind != "repository" or row is None or not row.launchable:
        return environment
    return Environment(
        name=environment.name,
        display_name=environment.display_name,
        description=_pinned(environment.description, row),
        default=environment.default,
        groups=environment.groups,
        default_url=environment.default_url,
        **_artifact(row, files_root, environment.files_folder),
    )


def _as_choice(row: EnvironmentRecord, files_root: Path) -> Environment:
    title = row.display_name or row.name
    return Environment(
        name=row.spawn_name,
        display_name=f"{title} ({row.owner})",
        description=_pinned(row.description, row),
        **_artifact(row, files_root),
    )


def _pinned_choice(build: BuildRecord, files_root: Path) -> Environment:
    """A pinned build as a choice: its own venv or image, and the files at its commit."""
    row = build.environment
    commit = build.commit_sha or build.ref
    title = f"{row.display_name or row.name} at {commit[:12]} (pinned)"
    description = f"Rebuilt from {row.repo_url or ''} @ {commit[:12]} for a gallery version."
    if build.venv_path:
        holder = Path(build.venv_path)
        artifact = {"kind": "venv", "path": holder}
    else:
        holder = image_files_holder(files_root, row.owner, row.name)
        artifact = {"kind": "image", "image": build.image_ref}
    source = kept_source(holder, commit)
    if is_kept(source):
        artifact |= {
            "files_source": source,
            "files_commit": commit,
            "files_folder": folder_name(row.repo_url or ""),
        }
    return Environment(
        name=pinned_choice_name(build.content_hash or build.image_digest or ""),
        display_name=title,
        description=description,
        **artifact,
    )


def _artifact(row: EnvironmentRecord, files_root: Path, files_folder: str | None = None) -> dict:
    if row.venv_path:
        holder = Path(row.venv_path)
        return {"kind": "venv", "path": holder, **_files(row, holder, files_folder)}
    holder = image_files_holder(files_root, row.owner, row.name)
    return {"kind": "image", "image": row.image_ref, **_files(row, holder, files_folder)}


def _files(row: EnvironmentRecord, holder: Path, files_folder: str | None) -> dict:
    """The repository files kept in ``holder`` (the row's venv, or its image's holder) at the
    row's commit (``repository_files``), with the home folder they go into: ``files_folder``,
    else the repository's name."""
    if not row.commit_sha:
        return {}
    source = kept_source(holder, row.commit_sha)
    if not is_kept(source):
        return {}
    return {
        "files_source": source,
        "files_commit": row.commit_sha,
        "files_folder": files_folder or folder_name(row.repo_url or ""),
    }


def _pinned(description: str, row: EnvironmentRecord) -> str:
    source = row.repo_url or ""
    if row.subdir:
        source += f" ({row.subdir})"
    commit = f" @ {row.commit_sha[:12]}" if row.commit_sha else ""
    pinned = f"Built from {source}{commit}." if source else ""
    return " ".join(part for part in (description, pinned) if part)


# --- the user's own GitLab images -------------------------------------------------------

COMMIT_TAG = re.compile(r"[0-9a-f]{40}")
"""The CI template tags each image with its commit; other tags are not its images."""
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
IMAGE_REF = re.compile(r"[a-z0-9][a-z0-9.:-]*(/[a-z0-9._-]+)+:[0-9a-f]{40}")
IMAGES_PER_PROJECT = 3
GITLAB_TIMEOUT = 20.0


class UserEnvironments(tuple):
    """Environments, plus ``notes`` for the spawn form (e.g. why GitLab's are missing)."""

    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, environments: Iterable[Environment], notes: Iterable[str] = ()):
        result = cls(environments)
        result.notes = tuple(notes)
        return result


class GitLabUserImages:
    """``await GitLabUserImages(url, inner)(site, username, groups, auth_state)``: ``inner``'s
    environments, then the images of the user's own GitLab projects.

    The listing runs with the user's token from ``auth_state`` (so GitLab's permissions
    decide) in a worker thread; an error or a slow GitLab becomes a note, not a broken form.
    """

    needs_auth_state = True
    """The spawner reads the user's auth state only for readers that say they need it."""

    def __init__(
        self,
        gitlab_url: str,
        inner: Callable[..., Awaitable[tuple[Environment, ...]]] | None = None,
        timeout: float = GITLAB_TIMEOUT,
    ) -> None:
        self.gitlab_url = gitlab_url
        self.inner = inner
        self.timeout = timeout

    def __deepcopy__(self, memo) -> GitLabUserImages:
        return self

    async def __call__(
        self,
        site: Site,
        username: str,
        groups: Iterable[str],
        auth_state: Mapping[str, Any] | None = None,
    ) -> tuple[Environment, ...]:
        groups = tuple(groups)
        base = await self.inner(site, username, groups) if self.inner else site.environments
        token = gitlab_token_from_auth_state(auth_state)
        if token is None:
            return tuple(base)
        try:
            images = await asyncio.wait_for(self._list(token), self.timeout)
        except TimeoutError:
            return UserEnvironments.of(
                base,
                [
                    f"GitLab did not answer in {self.timeout:g} s: "
                    "your GitLab images are not listed."
                ],
            )
        except GitLabAuthError:
            return UserEnvironments.of(
                base,
                [
                    "GitLab no longer accepts your sign-in: sign "
                    "out and in again to see your GitLab images."
                ],
            )
        except (GitLabError, OSError) as error:
            log.warning("Listing %s's GitLab images failed: %s", username, error)
            return UserEnvironments.of(base, [f"Your GitLab images could not be listed: {error}"])
        taken = {environment.name for environment in base}
        return UserEnvironments.of(
            [*base, *(e for e in gitlab_environments(images) if e.name not in taken)]
        )

    async def _list(self, token: str) -> list[BuiltImage]:
        connection = gitlab_user_connection(self.gitlab_url, token)
        try:
            return await list_user_images(connection)
        finally:
            connection.close()


def gitlab_environments(images: Iterable[BuiltImage]) -> list[Environment]:
    """Pure: the images the CI template built (tagged by commit) as image environments,
    pinned by digest, the newest ``IMAGES_PER_PROJECT`` of each project."""
    by_project: dict[int, list[BuiltImage]] = {}
    for image in images:
        valid = (
            COMMIT_TAG.fullmatch(image.tag)
            and DIGEST.fullmatch(image.digest)
            and IMAGE_REF.fullmatch(image.ref)
        )
        if valid:
            by_project.setdefault(image.project_id, []).append(image)
    environments = []
    for project_id in sorted(by_project):
        newest = sorted(by_project[project_id], key=lambda i: i.created_at or "", reverse=True)
        for image in newest[:IMAGES_PER_PROJECT]:
            name = f"gitlab-{project_id}-{image.tag[:12]}"
            if any(environment.name == name for environment in environments):
                continue
            environments.append(
                Environment(
                    name=name,
                    display_name=f"{image.project_path[:80]} @ {image.tag[:12]} (GitLab)",
                    description=f"Built by GitLab CI from {image.project_path[:200]} at commit "
                    f"{image.tag}; pinned to {image.digest[:19]}.",
                    kind="image",
                    image=image.pinned_ref,
                )
            )
    return environments
