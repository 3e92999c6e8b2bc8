"""The ``builder:`` section of ``kioskhub.yaml``: the catalog, the builds and what they may fetch.

It lives here, beside the code it configures, and ``kioskhub.hub.schema.site.Site`` includes it. The
paths that default to the hub's state folder are resolved by the functions below, because a
section does not know the state folder it sits beside.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .paths import ConfigPath
from .section import Section

HOST_PATTERN = re.compile(
    r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)


class BuilderSettings(Section):
    """Environments built from git repositories: catalog, builds, allowed sources."""

    enabled: bool = Field(
        False,
        description="Run the environment builder service: users register git repositories, "
        "KioskHub builds them and offers them in the spawn form.",
    )
    port: int = Field(8090, ge=1, le=65535, description="Port on 127.0.0.1 of the builder service.")
    catalog_url: str = Field(
        "",
        description="SQLAlchemy URL of the environment catalog (e.g. "
        "postgresql+psycopg://user@db/kioskhub). Empty: an SQLite file "
        "environments.sqlite in the state folder.",
    )
    environments_dir: ConfigPath | None = Field(
        None,
        description="Folder that holds the built venvs, one per content hash; user accounts "
        "must be able to enter it. Empty: environments/ in the state folder.",
    )
    cache_dir: ConfigPath | None = Field(
        None,
        description="Download caches of builds (uv's), one per environment owner: one "
        "owner's builds never use another's. Empty: builder-cache/ in the state folder.",
    )
    allowed_schemes: tuple[Literal["https", "http", "ssh", "git"], ...] = Field(
        ("https",), description="URL schemes that repository URLs may use."
    )
    allowed_hosts: tuple[str, ...] = Field(
        ("github.com", "gitlab.com"),
        description="Hosts that repository URLs may name; '*.example.org' allows every "
        "subdomain of example.org. IP addresses are never allowed.",
    )
    allow_local_paths: bool = Field(
        False,
        description="Allow repositories given as absolute paths on this machine. The build "
        "reads them as its own unprivileged identity, so it sees only what any account may "
        "read.",
    )
    concurrency: int = Field(1, ge=1, le=16, description="Builds that run at the same time.")
    build_timeout: int = Field(
        1800, ge=10, description="Seconds a build may take before it is stopped and failed."
    )
    build_account: str | None = Field(
        None,
        description="No longer used, and ignored: builds run as fresh uids of their own "
        "(build_uid_first). Accepted so that the config of an earlier version still loads; "
        "remove it.",
    )
    build_uid_first: int = Field(
        1_500_000_000,
        ge=100_000,
        le=4_000_000_000,
        description="First uid (and gid) of the range KioskHub reserves for builds when the hub "
        "runs as root: every build takes a fresh one of its own, with no passwd entry and no "
        "groups, and gives it back when it ends. No account or file of the machine may use "
        "this range. Without root, builds run as the hub's account.",
    )
    build_uid_count: int = Field(
        1_000_000,
        ge=64,
        le=100_000_000,
        description="How many uids the build range holds (from build_uid_first).",
    )
    environment_gid_first: int = Field(
        1_600_000_000,
        ge=100_000,
        le=4_000_000_000,
        description="First gid of the range KioskHub reserves for environment groups when the "
        "hub runs as root: each venv built for a user (not the site's) gets a gid of its own "
        "from this range, its top folder becomes root:<gid> 0750, and a server launched from "
        "it gets that gid as a supplementary group, so only those allowed to launch it read "
        "it. No account, group or file of the machine may use this range, and it may not "
        "overlap the build range.",
    )
    environment_gid_count: int = Field(
        1_000_000,
        ge=64,
        le=100_000_000,
        description="How many gids the environment group range holds (from environment_gid_first).",
    )
    build_memory_mb: int = Field(
        4096, ge=256, description="Memory (MiB) one build may use: its cgroup's limit."
    )
    build_cpus: float = Field(2.0, gt=0, le=512, description="CPU cores one build may use.")
    build_pids: int = Field(
        2048, ge=64, description="Processes and threads one build may run at once."
    )
    build_log_mb: int = Field(
        8,
        ge=1,
        le=256,
        description="Size (MiB) of a build's log that is kept, in memory and in the catalog; "
        "a longer log keeps its start and its last part, with a line saying it was cut.",
    )
    default_builder: Literal["local", "container"] = Field(
        "local",
        description="local: a uv venv on this machine; container: an image on the site base "
        "image, built with podman (no daemon, no registry outside) and pushed to "
        "builder.registry.",
    )
    base_image: str = Field(
        "",
        description="Image the container builder builds on. Empty: the site base image that "
        "`kioskhub image build-base` makes (what `kioskhub image name` prints).",
    )
    registry: str = Field(
        "",
        description="Registry (and path) that built images are pushed to, e.g. "
        "127.0.0.1:5000/kioskhub; environments record them by digest. Empty: images stay "
        "in this machine's podman storage (for the podman backend only).",
    )
    registry_insecure: bool = Field(
        False,
        description="Talk plain HTTP (no TLS verification) to builder.registry: only for a "
        "registry on loopback or a trusted network.",
    )
    allow_dockerfile: bool = Field(
        False,
        description="Build a repository's own Dockerfile. Its steps then decide the whole "
        "image (also as root inside the build container); off, such a repository is refused "
        "with a message.",
    )
    build_network: Literal["private", "none", "host"] = Field(
        "private",
        description="Network of a container build's steps: private (a network namespace of "
        "its own with outbound access, for pip and apt), none (no network: only what the "
        "base image holds), host (this machine's network, loopback services included; "
        "avoid).",
    )
    max_queued_builds_per_user: int = Field(
        3,
        ge=1,
        le=100,
        description="Builds one user may have queued or running at once; a further "
        "registration or rebuild is refused until one finishes, so no one fills the queue.",
    )
    max_request_bytes: int = Field(
        65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request body the builder service's API accepts, in bytes; a "
        "larger one is refused with 413 and never kept in memory.",
    )
    python_policy: Literal["download", "nearest", "refuse"] | None = Field(
        None,
        description="What a venv build does when runtime.txt (or environment.yml) asks for a "
        "Python 3.x this machine lacks. download: uv installs it, once, from "
        "python_downloads_mirror / python_downloads_json, into pythons/ in the state folder "
        "(root's, read-only); nearest: build with the nearest 3.x this machine has and say so "
        "in the build log and on the environment's page; refuse: fail the build, naming the "
        "versions there are. Empty: download where a download source is configured, else "
        "nearest.",
    )
    python_downloads_mirror: str = Field(
        "",
        description="Where uv downloads Pythons from (UV_PYTHON_INSTALL_MIRROR): a mirror of "
        "python-build-standalone's releases, https:// or file://. Empty: uv's own source "
        "(GitHub), used only when python_policy is download.",
    )
    python_downloads_json: str = Field(
        "",
        description="A downloads list in uv's format (uv's --python-downloads-json-url), a URL "
        "or an absolute path, naming the Python archives uv may install.",
    )
    conda_channels: tuple[str, ...] = Field(
        (),
        description="Conda channels (URLs: https:// or file://) that the conda packages of an "
        "environment.yml are solved against (py-rattler) and installed from, into the "
        "environment's venv. A repository's own 'channels:' are not used.",
    )
    conda_pypi_fallback: bool = Field(
        False,
        description="Where no conda channel is configured: install the conda packages of an "
        "environment.yml from PyPI instead, each under its PyPI name (a table of known "
        "differences, else the same name), logging every mapping. Off: such a repository is "
        "refused with a message naming environment.yml and the packages.",
    )

    @model_validator(mode="after")
    def _check_ranges_apart(self) -> BuilderSettings:
        builds = range(self.build_uid_first, self.build_uid_first + self.build_uid_count)
        groups = environment_gids(self)
        if builds.start < groups.stop and groups.start < builds.stop:
            raise ValueError(
                f"the environment group range {groups.start}-{groups.stop - 1} overlaps the "
                f"build range {builds.start}-{builds.stop - 1}: a build could read private "
                "environments; move environment_gid_first past the build range"
            )
        return self

    @field_validator("python_downloads_mirror", "python_downloads_json")
    @classmethod
    def _check_download_source(cls, value: str) -> str:
        if value and not re.match(r"^(https?|file)://[^\s]+$|^/[^\s]*$", value):
            raise ValueError(
                f"{value!r} is not a URL; write https://..., file:///... or an absolute path"
            )
        return value

    @field_validator("conda_channels")
    @classmethod
    def _check_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if not re.match(r"^(https?|file)://[^\s]+$", channel):
                raise ValueError(
                    f"{channel!r} is not a channel URL; write https://... or file:///..."
                )
        return tuple(channel.rstrip("/") for channel in value)

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(host.lower() for host in value)
        for host in lowered:
            if not HOST_PATTERN.fullmatch(host) or re.fullmatch(r"[\d.]+", host):
                raise ValueError(
                    f"{host!r} is not a host name; write names like gitlab.example.org or "
                    "*.example.org (IP addresses are not allowed)"
                )
        return lowered


def environment_gids(settings: BuilderSettings) -> range:
    """The gids reserved for environment groups."""
    first = settings.environment_gid_first
    return range(first, first + settings.environment_gid_count)


def catalog_url(settings: BuilderSettings, state_dir: Path) -> str:
    """The catalog's SQLAlchemy URL: the configured one, else SQLite in the state folder."""
    return settings.catalog_url or f"sqlite:///{state_dir / 'environments.sqlite'}"


def environments_dir(settings: BuilderSettings, state_dir: Path) -> Path:
    return settings.environments_dir or state_dir / "environments"


def cache_dir(settings: BuilderSettings, state_dir: Path) -> Path:
    return settings.cache_dir or state_dir / "builder-cache"


def pythons_dir(state_dir: Path) -> Path:
    """Where uv-installed Pythons are kept: root's, read-only, one folder per 3.x."""
    return state_dir / "pythons"


def python_download_source(settings: BuilderSettings) -> bool:
    """Whether the site names a download source for Pythons."""
    return bool(settings.python_downloads_mirror or settings.python_downloads_json)


def pod_registry_problem(settings: BuilderSettings, backend: str) -> str | None:
    """Why the container builder's images could not reach a cluster's nodes, or None.

    Without ``registry`` a built image stays in this machine's podman storage, which only
    the podman backend reads; Kubernetes nodes pull every image from a registry.
    """
    if backend != "kubernetes" or not settings.enabled or settings.default_builder != "container":
        return None
    if settings.registry:
        return None
    return (
        "builder.registry: the kubernetes backend's nodes pull environment images from a "
        "registry, and the container builder has none; set builder.registry to a registry "
        "(and path) the nodes can pull from, e.g. registry.example.org/kioskhub"
    )
