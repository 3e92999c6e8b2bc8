"""The environment catalog's data model (SQLAlchemy 2): environments and their builds.

This module is the contract between every builder (``local``, ``container``, ``gitlab-ci``)
and every reader (the builder service, the spawner, the GitLab CI path):

- An ``EnvironmentRecord`` is a named environment of one owner, built from a source (repo URL,
  ref, subdirectory). Its artifact fields (``venv_path``, or ``image_ref`` + ``image_digest``)
  and ``commit_sha`` describe the last *successful* build: a failed rebuild never touches
  them, so a ready environment stays launchable. ``status`` is the state of its latest build.
- A ``BuildRecord`` is one build attempt with its own log, progress and artifact. Builders
  that run elsewhere (GitLab CI) keep their pipeline in ``external_id`` / ``external_url``
  and anything else they need in ``builder_state`` (JSON text).

A *pinned* build (``BuildRecord.pinned``) rebuilds a commit already built for its
environment, beside it, for a gallery version pinned to that commit: it never becomes the
environment's artifact nor changes its status. A ``PinGrant`` names a user who asked (through
the gallery) to launch it; only they are offered it (``spawn_catalog``).

Site environments from the config are rows too, with owner ``SITE_OWNER`` (``@site``, which no
hub username can be: a user named ``site`` owns nothing of the site's) and builder ``site``.
The schema changes only through alembic revisions in ``image_builder/migrations``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

BUILDERS = ("local", "container", "gitlab-ci", "site")
"""Who makes the artifact: a uv venv here, repo2docker here, GitLab CI, or the site config."""

STATUSES = ("queued", "building", "ready", "failed")
FINISHED = ("ready", "failed")
SITE_OWNER = "@site"
"""Owner of the site config's rows; '@' is outside every username (schema.site)."""

ENVIRONMENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
"""Names of catalog environments: no '.', so that '<owner>.<name>' is unambiguous."""

VISIBILITY_PATTERN = (
    r"^(private|site|group:[A-Za-z0-9][A-Za-z0-9_.-]*(,[A-Za-z0-9][A-Za-z0-9_.-]*)*)$"
)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def check_environment_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(ENVIRONMENT_NAME_PATTERN, name):
        raise ValueError(
            f"invalid environment name {name!r}: use 1–32 lowercase letters, digits, '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def check_visibility(visibility: str) -> str:
    """'private', 'site' or 'group:<name>[,<name>...]'; ValueError otherwise."""
    if not isinstance(visibility, str) or not re.fullmatch(VISIBILITY_PATTERN, visibility):
        raise ValueError(
            f"invalid visibility {visibility!r}: use 'private', 'site' or 'group:<group name>'"
        )
    return visibility


def visibility_groups(visibility: str) -> set[str]:
    return (
        set(visibility.removeprefix("group:").split(","))
        if visibility.startswith("group:")
        else set()
    )


def spawn_name(owner: str, name: str) -> str:
    """The name a catalog environment has in the spawn form and in ``user_options``."""
    return name if owner == SITE_OWNER else f"{owner}.{name}"


class Base(DeclarativeBase):
    pass


class EnvironmentRecord(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_environments_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    repo_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    ref: Mapped[str] = mapped_column(String(255), default="HEAD")
    subdir: Mapped[str] = mapped_column(String(1024), default="")
    builder: Mapped[str] = mapped_column(String(16), default="local")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    visibility: Mapped[str] = mapped_column(String(200), default="private")
    commit_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    venv_path: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    image_ref: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    image_digest: Mapped[str | None] = mapped_column(String(128), nullable=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    built_at: Mapped[datetime | None] = mapped_column(nullable=True)

    builds: Mapped[list[BuildRecord]] = relationship(
        back_populates="environment",
        cascade="all, delete-orphan",
        order_by="BuildRecord.id",
        passive_deletes=True,
    )

    @property
    def launchable(self) -> bool:
        """Whether a successful build (or the site config) gave it an artifact."""
        return bool(self.venv_path or self.image_ref)

    @property
    def spawn_name(self) -> str:
        return spawn_name(self.owner, self.name)

    @property
    def own_builds(self) -> list[BuildRecord]:
        """Its builds, less the pinned ones (which never make its artifact)."""
        return [build for build in self.builds if not build.pinned]

    def to_dict(self) -> dict:
        own = self.own_builds
        latest = own[-1] if own else None
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "spawn_name": self.spawn_name,
            "display_name": self.display_name or self.name,
            "description": self.description,
            "source": {
                "repo_url": self.repo_url,
                "ref": self.ref,
                "commit_sha": self.commit_sha,
                "subdir": self.subdir,
            },
            "builder": self.builder,
            "status": self.status,
            "launchable": self.launchable,
            "visibility": self.visibility,
            "artifact": {
                "venv_path": self.venv_path,
                "image_ref": self.image_ref,
                "image_digest": self.image_digest,
                "content_hash": self.content_hash,
                "notes": json.loads(self.notes or "[]"),
            },
            "latest_build": latest.to_dict(with_log=False) if latest else None,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "built_at": _iso(self.built_at),
        }


class BuildRecord(Base):
    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    builder: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    ref: Mapped[str] = mapped_column(String(255), default="HEAD")
    commit_sha: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phase: Mapped[str] = mapped_column(String(64), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    venv_path: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    image_ref: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    image_digest: Mapped[str | None] = mapped_column(String(128), nullable=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    external_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    builder_state: Mapped[str | None] = mapped_column(Text, nullable=True)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    environment: Mapped[EnvironmentRecord] = relationship(back_populates="builds")

    def to_dict(self, with_log: bool = True) -> dict:
        data = {
            "id": self.id,
            "environment_id": self.environment_id,
            "builder": self.builder,
            "status": self.status,
            "ref": self.ref,
            "commit_sha": self.commit_sha,
            "phase": self.phase,
            "progress": self.progress,
            "error": self.error,
            "artifact": {
                "venv_path": self.venv_path,
                "image_ref": self.image_ref,
                "image_digest": self.image_digest,
                "content_hash": self.content_hash,
                "notes": json.loads(self.notes or "[]"),
            },
            "pinned": self.pinned,
            "external_id": self.external_id,
            "external_url": self.external_url,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }
        if with_log:
            data["log"] = self.log
        return data


class PinGrant(Base):
    """User ``username`` may launch pinned build ``build_id`` (the gallery asked for them)."""

    __tablename__ = "pin_grants"
    __table_args__ = (UniqueConstraint("build_id", "username", name="uq_pin_grants_build_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(
        ForeignKey("builds.id", ondelete="CASCADE"), index=True
    )
    username: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def pinned_choice_name(identity: str) -> str:
    """The spawn name of a pinned build: ``pin-`` and the start of its content hash (or of
    its image digest's hex)."""
    return f"pin-{identity.removeprefix('sha256:')[:24]}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None
