"""LaunchSpec → the local backend's native form: a command, its environment and its mounts.

Pure: the account, the isolation mode and KioskHub's own prefix come in as arguments.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .launch_spec import ChoiceError, LaunchSpec, data_mounts_env

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Account:
    """The system account a server runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] | None = None
    """Exactly these supplementary groups (a lab identity, which may have no passwd entry);
    None: the account's own groups in the name service (``initgroups``)."""


@dataclass(frozen=True)
class Bind:
    """A bind mount made in the server's private mount namespace."""

    source: str
    target: str
    read_only: bool
    private: bool = False
    """Group-restricted: the launcher refuses a source that other accounts can reach."""


@dataclass(frozen=True)
class LocalLaunch:
    """How the local backend starts one server."""

    command: list[str]
    env: dict[str, str]
    home: Path
    account: Account | None = None
    binds: tuple[Bind, ...] = ()
    home_links: tuple[tuple[str, str], ...] = ()
    cgroup_procs: tuple[str, ...] = ()
    extra_groups: tuple[int, ...] = ()
    """Supplementary groups beyond the account's: a private environment's (``venv_group``)."""

    @property
    def home_mount_points(self) -> tuple[str, ...]:
        """Names of the folders in the home that data is mounted on."""
        return tuple(Path(b.target).name for b in self.binds if Path(b.target).parent == self.home)

    @property
    def _account_groups(self) -> tuple[int, ...] | None:
        return self.account.groups if self.account else ()

    def isolation_plan(self) -> dict:
        """What the launcher (or a fork server's child) does before the server runs."""
        return {
            "binds": [asdict(b) for b in self.binds],
            "cgroup_procs": list(self.cgroup_procs),
            "uid": self.account.uid if self.account else None,
            "gid": self.account.gid if self.account else None,
            "groups": [*(self._account_groups or ()), *self.extra_groups],
            "initgroups": self.account.name if self._account_groups is None else None,
            "home": str(self.home),
        }

    def launcher_argv(self, python: str = sys.executable) -> list[str]:
        """The command wrapped in the launcher that sets up mounts, cgroups and the account."""
        plan = json.dumps(self.isolation_plan())
        return [python, "-m", "kioskhub.spawner.local_launcher", plan, "--", *self.command]


def environment_prefix(spec: LaunchSpec, own_prefix: Path) -> Path:
    """The venv that provides jupyterhub-singleuser and the kernel for ``spec``."""
    environment = spec.environment
    if environment.kind == "image":
        raise ChoiceError(
            f"The environment {environment.name!r} is a container image; the local backend "
            "runs venv environments. Choose another environment."
        )
    if environment.kind == "repository":
        raise ChoiceError(
            f"The environment {environment.name!r} has not been built yet. Build it first."
        )
    return environment.prefix or own_prefix


def venv_group(status: os.stat_result, gids: range) -> tuple[int, ...]:
    """The group a server needs to read a private venv, from its top folder's ``lstat``.

    A private venv's top folder is a directory owned by root, closed to others, whose group
    is one of the site's environment gids (``builder.environment_gid_first``): that gid.
    Anything else (a link, a folder someone else owns, an open folder, another group) gets
    nothing, so no server is ever handed a group that root did not give to one venv.
    """
    if (
        stat.S_ISDIR(status.st_mode)
        and status.st_uid == 0
        and not status.st_mode & 0o007
        and status.st_gid in gids
    ):
        return (status.st_gid,)
    return ()


def local_launch(
    spec: LaunchSpec,
    *,
    own_prefix: Path,
    account: Account | None,
    gpu_devices: str | None = None,
) -> LocalLaunch:
    """The local backend's plan for ``spec``: as ``account`` with private mounts, or shared.

    With an account, data is bind-mounted at its mount path and in the home folder, and
    read-only mounts are read-only in the kernel's eyes. Without one (the hub is not
    root), data is only linked from the home folder.
    """
    prefix = environment_prefix(spec, own_prefix)
    env = {
        **spec.env,
        "PATH": f"{prefix / 'bin'}:{SYSTEM_PATH}",
        "VIRTUAL_ENV": str(prefix),
        "HOME": str(spec.home),
        "USER": account.name if account else spec.username,
        "SHELL": "/bin/bash",
    }
    if gpu_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu_devices
    binds: tuple[Bind, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    if account:
        binds = tuple(
            Bind(str(m.source), target, m.read_only, private=bool(m.groups))
            for m in spec.mounts
            for target in (m.mount_path, str(spec.home / m.name))
        )
        if spec.mounts:
            env["KIOSKHUB_DATA_DIR"] = spec.mounts[0].mount_path
        env |= data_mounts_env(
            (m.name, (m.mount_path, str(spec.home / m.name))) for m in spec.mounts
        )
    else:
        links = tuple((m.name, str(m.source)) for m in spec.mounts)
        if spec.mounts:
            env["KIOSKHUB_DATA_DIR"] = str(spec.mounts[0].source)
        env |= data_mounts_env(
            (m.name, (str(m.source), str(spec.home / m.name))) for m in spec.mounts
        )
    return LocalLaunch(
        command=[str(prefix / "bin" / "jupyterhub-singleuser")],
        env=env,
        home=spec.home,
        account=account,
        binds=binds,
        home_links=links,
    )
