"""Which starts a fork server may serve, and what its parent starts with. Pure.

As root, a fork server's parent imports an environment's code as root. That is safe only
for code the site's admins installed: KioskHub's own environment and the venvs the site
config names (``kind: venv``). Environments built from a repository (the build catalog's,
or a config environment of kind ``repository`` once built) hold what a user's repository
chose to install; their servers start normally, as their account, never through a parent
running as root. ``fork_servers`` checks on top that every file of a served venv is
root's and not writable by others before its parent starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kioskhub.hub.schema.site import Site

from .launch_spec import LaunchSpec

KEPT_FROM_HUB = ("PYTHONPATH", "LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP")
"""The hub's variables a server inherits (LocalProcessSpawner's ``env_keep``, besides PATH
and VIRTUAL_ENV) that may change what it imports: its parent imports with them too."""

KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.comm",
    "IPython.core.interactiveshell",
    # What a kernel imports only while it starts; measured: about a third of its start.
    "ipykernel.debugger",  # with debugpy and its pydevd (see ``forked_kernels``)
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
)
"""Imported on top by every parent when its servers fork their kernels too
(``spawner.fork_kernels``): the modules ``python -m ipykernel_launcher`` loads."""

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

ENVIRONMENT_SPACE = "KIOSKHUB_FORK_ENVIRONMENT_SPACE"
"""A variable of the parent that only reserves room: each child writes its own environment
over the parent's initial one, so that ``/proc/<pid>/environ`` shows the server's."""
ENVIRONMENT_SPACE_BYTES = 64 * 1024


def served_prefix(spec: LaunchSpec, own_prefix: Path) -> Path:
    return spec.environment.prefix or own_prefix


def trusted_prefixes(site: Site, own_prefix: Path) -> frozenset[Path]:
    """The venvs whose code the site's admins chose: KioskHub's own and the config's venvs."""
    named = (e.path for e in site.environments if e.kind == "venv" and e.path is not None)
    return frozenset({own_prefix, *named})


def fork_refusal(site: Site, spec: LaunchSpec, own_prefix: Path, as_root: bool) -> str | None:
    """Why ``spec`` starts without a fork server, or None when one may serve it."""
    if not site.spawner.fork_server:
        return "spawner.fork_server is off"
    if spec.environment.kind != "venv":
        return f"the environment {spec.environment.name!r} is not a venv"
    prefix = served_prefix(spec, own_prefix)
    if as_root and prefix not in trusted_prefixes(site, own_prefix):
        return (
            f"the environment {spec.environment.name!r} was built from a repository, and a "
            "fork server would import its code as root"
        )
    return None


def prewarm_prefixes(site: Site, own_prefix: Path) -> tuple[Path, ...]:
    """The venvs of ``spawner.fork_server_prewarm``, by environment name (config venvs only)."""
    by_name = {e.name: e.path or own_prefix for e in site.environments if e.kind == "venv"}
    return tuple(dict.fromkeys(by_name[n] for n in site.spawner.fork_server_prewarm))


def parent_environment(hub_env: Mapping[str, str], prefix: Path) -> dict[str, str]:
    """The parent's environment: what every server of ``prefix`` starts with, and no more
    (no user, home or token; each child sets its own)."""
    env = {key: hub_env[key] for key in KEPT_FROM_HUB if key in hub_env}
    return {
        **env,
        "PATH": f"{prefix / 'bin'}:{SYSTEM_PATH}",
        "VIRTUAL_ENV": str(prefix),
        "HOME": "/nonexistent",
        ENVIRONMENT_SPACE: "." * ENVIRONMENT_SPACE_BYTES,
    }
