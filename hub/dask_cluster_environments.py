"""Which environment a user's Dask cluster runs in: one the user may launch, never another.

A server names its own environment as the default cluster option ``environment``
(``client_env``), so ``Gateway().new_cluster()`` runs the scheduler and workers in the
notebook's environment; a user may name another. The name is only a request: the gateway
reads what the user may launch exactly as the spawner does (the site's environments for
the user's groups and, with the builder on, the catalog's, through the same
``environments_for_user`` the hub assembly gives the spawner), and resolves the name among
those alone. Another user's private venv, a path or an unknown name is refused with the
reason.

An image environment on the podman backend runs as containers of that image
(``dask_cluster_containers``); on other backends, in KioskHub's own environment.

A private venv (root:<G>, 0750) gets its group ``G`` for the cluster's processes, found as
the spawner finds it for servers (``venv_group``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import LocalClusterConfig
from traitlets import Dict, Integer, List, Unicode

from kioskhub.hub.schema.builder import environment_gids
from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.config_file import load_site
from kioskhub.hub.schema.site import Site
from kioskhub.spawner.launch_spec import ChoiceError, pick
from kioskhub.spawner.local_plan import venv_group

from . import dask_dashboard_guard
from .jupyterhub_settings import launchable_environments

EnvironmentsForUser = Callable[[Site, str, Iterable[str]], Awaitable[tuple[Environment, ...]]]


@dataclass(frozen=True)
class ClusterEnvironment:
    """Where a cluster's processes come from."""

    name: str
    prefix: Path | None = None
    """The venv; None: KioskHub's own environment (the gateway's configured commands)."""
    groups: tuple[int, ...] = ()
    """Supplementary groups the processes need to read it: a private venv's."""
    image: str | None = None
    """The image whose containers run the processes (``dask_cluster_containers``)."""


OWN_ENVIRONMENT = ClusterEnvironment("")


class KioskClusterConfig(LocalClusterConfig):
    """A cluster's config, with the environment its processes run in."""

    environment_prefix = Unicode(
        "", help="The venv of the cluster's processes; empty: the configured commands'."
    )
    environment_groups = List(
        Integer(), help="Supplementary groups of the cluster's processes: a private venv's."
    )
    environment_image = Unicode(
        "", help="The image whose podman containers run the cluster's processes; empty: none."
    )
    run_as = Dict(
        help="The lab identity the cluster's processes run as (name, uid, gid, groups), "
        "recorded when the cluster is created (``dask_cluster_accounts``); empty: the "
        "user's kh- account."
    )


def environment_commands(prefix: Path) -> tuple[list[str], list[str]]:
    """The scheduler and worker commands with the Python of the venv at ``prefix``.

    The dashboard guard is preloaded from its file: KioskHub is not installed in that venv.
    """
    python = str(prefix / "bin" / "python")
    guard = dask_dashboard_guard.__file__
    return [python, "-m", "dask", "scheduler", "--preload", guard], [python, "-m", "dask", "worker"]


class ClusterEnvironments:
    """``await resolve(username, groups, name)``: the environment of a new cluster."""

    def __init__(
        self,
        site: Site,
        launchable: EnvironmentsForUser | None = None,
        own_prefix: Path = Path(sys.prefix),
    ) -> None:
        self.site = site
        self.launchable = launchable
        self.own_prefix = own_prefix

    @classmethod
    def from_site_file(cls, path: str) -> ClusterEnvironments:
        """As the hub reads the site config at ``path``, with the same catalog."""
        site = load_site(path)
        return cls(site, launchable_environments(site))

    async def resolve(self, username: str, groups: Iterable[str], name: str) -> ClusterEnvironment:
        """The environment ``name`` if ``username`` may launch it; PublicException if not."""
        if not name:
            return OWN_ENVIRONMENT
        groups = tuple(groups)
        if self.launchable is None:
            choices = self.site.environments
        else:
            choices = await self.launchable(self.site, username, groups)
        try:
            environment: Environment = pick("environment", choices, name, groups)
        except ChoiceError as error:
            raise PublicException(
                f"A Dask cluster runs in an environment you may launch. {error}"
            ) from None
        if environment.kind == "image":
            # On the podman backend, the cluster runs the server's own image as containers;
            # elsewhere (no podman to run it) KioskHub's own environment, whose Dask versions
            # the site base image carries.
            if self.site.spawner.backend == "podman":
                return ClusterEnvironment(name, image=environment.image)
            return ClusterEnvironment(name)
        if environment.kind != "venv":
            raise PublicException(f"The environment {name!r} has not been built yet.")
        if environment.path is None or Path(environment.path) == self.own_prefix:
            return ClusterEnvironment(name)
        return await asyncio.to_thread(self._venv, name, Path(environment.path))

    def _venv(self, name: str, prefix: Path) -> ClusterEnvironment:
        try:
            groups = venv_group(os.lstat(prefix), environment_gids(self.site.builder))
        except FileNotFoundError:
            raise PublicException(
                f"The environment {name!r} is missing its folder {prefix}; ask the site's admins."
            ) from None
        if not (prefix / "bin" / "dask").is_file():
            raise PublicException(
                f"The environment {name!r} has no Dask (it was built before KioskHub put Dask "
                "into every environment): rebuild it, then start your server from the new build."
            )
        return ClusterEnvironment(name, prefix, groups)
