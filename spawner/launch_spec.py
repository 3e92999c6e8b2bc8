"""LaunchSpec: everything a backend needs to start one user server, as plain data.

``build_launch_spec`` is a pure function of the site config and the user; backends
turn the spec into their native form (argv and environment, a Pod manifest, ...)
and do only I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hub.site_config import Site


@dataclass(frozen=True)
class MountSpec:
    """One data folder made visible inside the server."""

    name: str
    source: Path
    mount_path: str
    read_only: bool


@dataclass(frozen=True)
class LaunchSpec:
    """What to run for one user, independent of where it runs."""

    username: str
    home: Path
    default_url: str
    mounts: tuple[MountSpec, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    examples_source: Path | None = None
    examples_target: str = "examples"


def build_launch_spec(site: Site, username: str) -> LaunchSpec:
    """Turn the site config and a username into the LaunchSpec for that user's server."""
    mounts = tuple(MountSpec(m.name, m.source, m.mount_path, m.read_only) for m in site.data_mounts)
    env = {"KIOSKHUB_USER": username}
    if mounts:
        env["KIOSKHUB_DATA_DIR"] = str(mounts[0].source)
    return LaunchSpec(
        username=username,
        home=site.home.root / username,
        default_url=site.spawner.default_url,
        mounts=mounts,
        env=env,
        examples_source=site.examples.source,
        examples_target=site.examples.target,
    )
