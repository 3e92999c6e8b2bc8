"""LaunchSpec: everything a backend needs to start one user server, as plain data.

``build_launch_spec`` is a pure function of the site config, the user, their groups
and the options they chose. It either returns the spec or raises ChoiceError with a
message for the user. Backends turn the spec into their native form (argv and
environment, a Pod manifest, ...) and do only I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from kioskhub.hub.schema.choices import Choice, Environment, ResourceProfile
from kioskhub.hub.schema.culling import culling_env
from kioskhub.hub.schema.dask import client_env
from kioskhub.hub.schema.gallery import gallery_env
from kioskhub.hub.schema.site import Site

if TYPE_CHECKING:
    from .lab_identity import LabIdentity

OPTION_KEYS = ("environment", "profile")
DATA_MOUNTS_ENV = "KIOSKHUB_DATA_MOUNTS"
"""Each data mount's name and the folders where the server sees it, as JSON: the kernel's
recorder of the data a notebook read (``kioskhub.extensions.data_reads``) reads it."""


class ChoiceError(ValueError):
    """The user's choice cannot be launched; the message says why and what to do."""


@dataclass(frozen=True)
class MountSpec:
    """One data folder made visible inside the server."""

    name: str
    source: Path
    mount_path: str
    read_only: bool
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvironmentSpec:
    """The environment a server runs in: a venv prefix on this machine, or an image."""

    name: str
    kind: str
    prefix: Path | None = None
    image: str | None = None


@dataclass(frozen=True)
class RepositoryFiles:
    """A repository's files at one commit, pulled into ``folder`` of the home at launch."""

    source: Path
    """A bare git repository whose branch ``built`` holds ``commit``."""
    commit: str
    folder: str


@dataclass(frozen=True)
class LaunchSpec:
    """What to run for one user, independent of where it runs."""

    username: str
    environment: EnvironmentSpec
    profile: str
    cpu: float
    memory_bytes: int
    home: Path
    default_url: str
    gpu_count: int = 0
    gpu_type: str | None = None
    max_processes: int | None = None
    server_name: str = ""
    mounts: tuple[MountSpec, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    examples_source: Path | None = None
    examples_target: str = "examples"
    repository_files: RepositoryFiles | None = None
    identity: LabIdentity | None = None
    """The lab identity the server runs as (``auth.identity``); None: a kh- account."""


def data_mounts_env(folders: Iterable[tuple[str, tuple[str, ...]]]) -> dict[str, str]:
    """``KIOSKHUB_DATA_MOUNTS`` for (mount name, folders where the server sees it) pairs."""
    value = [{"name": name, "paths": list(paths)} for name, paths in folders]
    return {DATA_MOUNTS_ENV: json.dumps(value)} if value else {}


def allowed(choices: Iterable[Choice], groups: Iterable[str]) -> list[Choice]:
    """The choices that a member of ``groups`` may use, in config order."""
    member_of = set(groups)
    return [c for c in choices if not c.groups or member_of & set(c.groups)]


def pick(kind: str, choices: tuple[Choice, ...], name: str | None, groups: Iterable[str]):
    """The named choice, or the default among the allowed ones; ChoiceError when refused."""
    groups = sorted(groups)
    usable = allowed(choices, groups)
    if name is None:
        if not usable:
            raise ChoiceError(f"No {kind} is available to your groups; ask the site's admins.")
        return next((c for c in usable if c.default), usable[0])
    chosen = next((c for c in choices if c.name == name), None)
    if chosen is None:
        names = ", ".join(c.name for c in usable) or "(none)"
        raise ChoiceError(f"Unknown {kind} {name!r}. Choose one of: {names}.")
    if chosen not in usable:
        raise ChoiceError(
            f"The {kind} {name!r} is only for the groups {', '.join(chosen.groups)}; "
            f"you are in {', '.join(groups) or 'no group'}."
        )
    return chosen


def normalise_options(options: Mapping[str, object] | None) -> dict[str, str]:
    """Check the keys and types of ``user_options`` (from the form, a launch link or the API)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ChoiceError(
            f"Unknown option {', '.join(map(repr, unknown))}; "
            f"the options are: {', '.join(OPTION_KEYS)}."
        )
    clean = {}
    for key, value in options.items():
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise ChoiceError(f"Option {key!r} must be a name (a string), got {value!r}.")
        clean[key] = value
    return clean


def build_launch_spec(
    site: Site,
    username: str,
    groups: Iterable[str] = (),
    options: Mapping[str, object] | None = None,
    *,
    server_name: str = "",
    gpus_available: bool = False,
) -> LaunchSpec:
    """Turn the site config, a user and their choice into the LaunchSpec of their server."""
    groups = list(groups)
    options = normalise_options(options)
    environment: Environment = pick(
        "environment", site.environments, options.get("environment"), groups
    )
    profile: ResourceProfile = pick("profile", site.profiles, options.get("profile"), groups)
    if profile.gpu.count and not gpus_available:
        raise ChoiceError(
            f"The profile {profile.name!r} needs {profile.gpu.count} GPU(s), but this site "
            f"has no NVIDIA GPU for its {site.spawner.backend} backend. Choose a CPU profile."
        )
    mounts = tuple(
        MountSpec(m.name, m.source, m.mount_path, m.read_only, m.groups)
        for m in allowed(site.data_mounts, groups)
    )
    env = {
        "KIOSKHUB_USER": username,
        "KIOSKHUB_ENVIRONMENT": environment.name,
        "KIOSKHUB_PROFILE": profile.name,
        "CPU_LIMIT": f"{profile.cpu:g}",
        "MEM_LIMIT": str(profile.memory),
        **client_env(site, profile.name, environment=environment.name),
        **culling_env(site.culling, profile.name),
        **gallery_env(site.gallery),
    }
    files = repository_files(environment)
    return LaunchSpec(
        username=username,
        server_name=server_name,
        environment=EnvironmentSpec(
            environment.name, environment.kind, environment.path, environment.image
        ),
        profile=profile.name,
        cpu=profile.cpu,
        memory_bytes=profile.memory,
        max_processes=profile.max_processes,
        gpu_count=profile.gpu.count,
        gpu_type=profile.gpu.type,
        home=site.home.root / username,
        default_url=opening_url(environment, files, site.spawner.default_url),
        mounts=mounts,
        env=env,
        examples_source=site.examples.source,
        examples_target=site.examples.target,
        repository_files=files,
    )


def repository_files(environment: Environment) -> RepositoryFiles | None:
    """The repository files ``environment`` brings, if any; the folder defaults to the
    source's name without ``.git``."""
    if environment.files_source is None or environment.files_commit is None:
        return None
    folder = environment.files_folder or environment.files_source.name.removesuffix(".git")
    return RepositoryFiles(environment.files_source, environment.files_commit, folder)


def opening_url(environment: Environment, files: RepositoryFiles | None, site_url: str) -> str:
    """The environment's own ``default_url``, else its files' folder in JupyterLab, else the
    site's ``spawner.default_url``."""
    if environment.default_url:
        return environment.default_url
    if files:
        return f"/lab/tree/{quote(files.folder)}"
    return site_url
