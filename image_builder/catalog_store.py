"""Catalog operations: register, build bookkeeping, share, delete, site sync. Sessions in, rows out.

Every state change of an environment and its builds goes through here, so the rule "a failed
build never replaces a ready environment" lives in one function (``finish_failed``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kioskhub.hub.schema.choices import Environment, own_environment_path

from .builder_base import Artifact
from .catalog import (
    BUILDERS,
    SITE_OWNER,
    BuildRecord,
    EnvironmentRecord,
    PinGrant,
    check_environment_name,
    check_visibility,
    utcnow,
)
from .catalog_access import Viewer, can_see


class CatalogError(Exception):
    """A request the catalog refuses; ``status`` is the HTTP status that fits."""

    status = 400


class NotFound(CatalogError):
    status = 404


class Conflict(CatalogError):
    status = 409


def visible(session: Session, viewer: Viewer) -> list[EnvironmentRecord]:
    """Every environment ``viewer`` may see, site ones first, then by owner and name."""
    rows = session.scalars(select(EnvironmentRecord).order_by(EnvironmentRecord.id)).all()
    rows = [row for row in rows if can_see(row, viewer)]
    return sorted(rows, key=lambda r: (r.owner != SITE_OWNER, r.owner, r.name))


def get_visible(session: Session, environment_id: int, viewer: Viewer) -> EnvironmentRecord:
    """The environment, or NotFound (also when it exists but ``viewer`` may not see it)."""
    row = session.get(EnvironmentRecord, environment_id)
    if row is None or not can_see(row, viewer):
        raise NotFound(f"no environment {environment_id} that you can see")
    return row


def register(
    session: Session,
    *,
    owner: str,
    name: str,
    repo_url: str,
    ref: str,
    subdir: str,
    builder: str,
    visibility: str = "private",
    display_name: str = "",
    description: str = "",
) -> tuple[EnvironmentRecord, BuildRecord]:
    """A new environment with its first build queued; Conflict when the owner has the name."""
    check_environment_name(name)
    check_visibility(visibility)
    if builder not in BUILDERS or builder == "site":
        raise CatalogError(f"unknown builder {builder!r}; use local, container or gitlab-ci")
    existing = session.scalar(
        select(EnvironmentRecord).where(
            EnvironmentRecord.owner == owner, EnvironmentRecord.name == name
        )
    )
    if existing is not None:
        raise Conflict(f"you already have an environment named {name!r} (id {existing.id})")
    row = EnvironmentRecord(
        name=name,
        owner=owner,
        display_name=display_name,
        description=description,
        repo_url=repo_url,
        ref=ref,
        subdir=subdir,
        builder=builder,
        status="queued",
        visibility=visibility,
    )
    session.add(row)
    session.flush()
    return row, queue_build(session, row)


class QueueLimit(CatalogError):
    status = 429


def check_queue_room(session: Session, owner: str, limit: int, asked_by: str = "") -> None:
    """QueueLimit when ``owner`` has ``limit`` builds queued or running already."""
    waiting = session.scalar(
        select(func.count(BuildRecord.id))
        .join(EnvironmentRecord)
        .where(
            EnvironmentRecord.owner == owner,
            BuildRecord.status.in_(("queued", "building")),
        )
    )
    if waiting >= limit:
        who = "you already have" if owner == (asked_by or owner) else f"{owner} already has"
        raise QueueLimit(
            f"{who} {waiting} builds queued or running; wait for one to finish "
            f"(at most {limit} at once)"
        )


def queue_build(session: Session, row: EnvironmentRecord) -> BuildRecord:
    """A new queued build of ``row`` at its ref; its ready artifact stays as it is."""
    build = BuildRecord(
        environment=row, builder=row.builder, status="queued", ref=row.ref, phase="queued"
    )
    row.status = "queued"
    session.add(build)
    session.flush()
    return build


def start_build(session: Session, build: BuildRecord) -> None:
    build.status = "building"
    if not build.pinned:
        build.environment.status = "building"
    build.started_at = utcnow()


def save_progress(session: Session, build: BuildRecord, log_text: str, percent: int, phase: str):
    build.log, build.progress, build.phase = log_text, percent, phase[:64]


def finish_ready(session: Session, build: BuildRecord, artifact: Artifact, log_text: str) -> None:
    """The build succeeded: it becomes the environment's artifact, pinned to its commit."""
    build.status = "ready"
    build.finished_at = utcnow()
    build.progress, build.phase, build.log = 100, "ready", log_text
    build.commit_sha = artifact.commit_sha
    build.content_hash = artifact.content_hash
    build.venv_path, build.image_ref, build.image_digest = (
        artifact.venv_path,
        artifact.image_ref,
        artifact.image_digest,
    )
    build.notes = json.dumps(artifact.notes) if artifact.notes else None
    if build.pinned:
        return
    row = build.environment
    row.status = "ready"
    row.commit_sha = artifact.commit_sha
    row.content_hash = artifact.content_hash
    row.venv_path, row.image_ref, row.image_digest = (
        artifact.venv_path,
        artifact.image_ref,
        artifact.image_digest,
    )
    row.notes = build.notes
    row.built_at = build.finished_at


def finish_failed(session: Session, build: BuildRecord, error: str, log_text: str) -> None:
    """The build failed: it keeps its log; the environment's ready artifact is untouched."""
    build.status = "failed"
    build.finished_at = utcnow()
    build.error = error
    build.phase = "failed"
    build.log = log_text if log_text else build.log
    if not build.pinned:
        build.environment.status = "failed"


class PinRefused(CatalogError):
    status = 403


def queue_pinned_build(
    session: Session, row: EnvironmentRecord, commit: str, username: str
) -> tuple[BuildRecord, bool]:
    """A pinned build of ``row`` at ``commit`` for ``username``, and whether it is new.

    Only a commit that a successful build of ``row`` already built may be pinned
    (PinRefused otherwise): a pinned build never fetches anything the environment's owner
    did not build. A pinned build of that commit that is ready or under way is reused; a
    new one is queued. ``username`` is granted its launch either way.
    """
    if row.owner == SITE_OWNER and row.builder == "site":
        raise PinRefused(f"{row.name!r} comes from the site config; nothing to rebuild")
    built = session.scalar(
        select(BuildRecord).where(
            BuildRecord.environment_id == row.id,
            BuildRecord.status == "ready",
            BuildRecord.commit_sha == commit,
        )
    )
    if built is None:
        raise PinRefused(
            f"commit {commit!r} was never built for {row.spawn_name!r}; only a commit it "
            "was built from can be rebuilt"
        )
    existing = session.scalar(
        select(BuildRecord)
        .where(
            BuildRecord.environment_id == row.id,
            BuildRecord.pinned.is_(True),
            BuildRecord.ref == commit,
            BuildRecord.status.in_(("queued", "building", "ready")),
        )
        .order_by(BuildRecord.id.desc())
    )
    new = existing is None
    if new:
        existing = BuildRecord(
            environment=row,
            builder=row.builder,
            status="queued",
            ref=commit,
            phase="queued",
            pinned=True,
        )
        session.add(existing)
        session.flush()
    grant_pin(session, existing, username)
    return existing, new


def grant_pin(session: Session, build: BuildRecord, username: str) -> None:
    granted = session.scalar(
        select(PinGrant).where(PinGrant.build_id == build.id, PinGrant.username == username)
    )
    if granted is None:
        session.add(PinGrant(build_id=build.id, username=username))
        session.flush()


def pinned_builds_for(session: Session, username: str) -> list[BuildRecord]:
    """The ready pinned builds ``username`` was granted, oldest first."""
    return list(
        session.scalars(
            select(BuildRecord)
            .join(PinGrant, PinGrant.build_id == BuildRecord.id)
            .where(PinGrant.username == username, BuildRecord.status == "ready")
            .order_by(BuildRecord.id)
        ).all()
    )


def unfinished_builds(session: Session) -> list[BuildRecord]:
    return list(
        session.scalars(
            select(BuildRecord).where(BuildRecord.status.in_(("queued", "building")))
        ).all()
    )


def set_visibility(session: Session, row: EnvironmentRecord, visibility: str) -> None:
    row.visibility = check_visibility(visibility)


def delete(session: Session, row: EnvironmentRecord) -> None:
    session.delete(row)


def sync_site_environments(
    session: Session, environments: Iterable[Environment]
) -> list[EnvironmentRecord]:
    """Mirror the site config's environments as rows owned by ``SITE_OWNER``.

    Returns the rows of kind 'repository' that need a build (new, never built, or their
    repository or ref changed). Rows of environments gone from the config are deleted.
    """
    environments = list(environments)
    rows = {
        row.name: row
        for row in session.scalars(
            select(EnvironmentRecord).where(EnvironmentRecord.owner == SITE_OWNER)
        ).all()
    }
    to_build = []
    for environment in environments:
        row = rows.pop(environment.name, None)
        if row is None:
            row = EnvironmentRecord(name=environment.name, owner=SITE_OWNER, ref="HEAD")
            session.add(row)
        row.display_name = environment.display_name
        row.description = environment.description
        row.visibility = "group:" + ",".join(environment.groups) if environment.groups else "site"
        if environment.kind == "repository":
            repository = getattr(environment, "repository", None)
            ref = getattr(environment, "ref", None) or "HEAD"
            changed = row.repo_url != repository or row.ref != ref
            row.builder, row.repo_url, row.ref, row.subdir = "local", repository, ref, ""
            if changed or not row.launchable:
                to_build.append(row)
        else:
            row.builder, row.repo_url, row.status = "site", None, "ready"
            row.venv_path = (
                str(environment.path or own_environment_path())
                if environment.kind == "venv"
                else None
            )
            row.image_ref = environment.image if environment.kind == "image" else None
    for gone in rows.values():
        session.delete(gone)
    session.flush()
    return to_build


def builder_state(build: BuildRecord) -> dict:
    """The JSON state a remote builder (GitLab CI) keeps on a build."""
    return json.loads(build.builder_state) if build.builder_state else {}


def set_builder_state(build: BuildRecord, state: dict) -> None:
    build.builder_state = json.dumps(state, sort_keys=True)
