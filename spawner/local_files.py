"""The local backend's work on files (home, data folders, server log), off the event loop.

Each function here touches the file system and may wait on it; the spawner calls them
through ``in_thread`` so that the hub's event loop never blocks on a slow disk or NFS home.
"""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

from tornado import web

from . import server_log
from .home import prepare_home
from .launch_spec import LaunchSpec
from .local_accounts import closed_ancestor
from .local_plan import LocalLaunch, venv_group


async def in_thread(function, *args):
    """``function(*args)`` in a worker thread."""
    return await asyncio.to_thread(functools.partial(function, *args))


async def prepare_server_files(spec: LaunchSpec, plan: LocalLaunch) -> list[str]:
    """Home folder, examples, data mount points and repository files of ``plan``; the
    examples copied.

    The work inside the home is done by the user's own account (``home.prepare_home``), with
    the private environment's group, which its repository files need.
    """
    account = plan.account
    copied = await prepare_home(
        spec,
        (account.uid, account.gid) if account else None,
        mount_points=plan.home_mount_points,
        links=plan.home_links,
        groups=plan.extra_groups,
    )
    await in_thread(check_environment, plan)
    return copied


def environment_groups(plan: LocalLaunch, gids: range) -> tuple[int, ...]:
    """The private venv's group for ``plan`` (``venv_group``), from its top folder's lstat."""
    try:
        return venv_group(os.lstat(plan.env["VIRTUAL_ENV"]), gids)
    except FileNotFoundError:
        return ()


def check_environment(plan: LocalLaunch) -> None:
    """A 500 naming the problem when the server's files are missing or out of reach."""
    server = Path(plan.command[0])
    environment = plan.env["KIOSKHUB_ENVIRONMENT"]
    if not server.exists():
        raise web.HTTPError(
            500,
            "%s",
            f"The environment {environment!r} is missing {server}: install jupyterhub "
            f"and jupyterlab into {plan.env['VIRTUAL_ENV']}, or ask the site's admins to "
            "fix the environment.",
        )
    if plan.account:
        venv = Path(plan.env["VIRTUAL_ENV"])
        python = (venv / "bin" / "python").resolve()
        # A private venv is closed to others; the server enters it with its group.
        inside = venv if plan.extra_groups else server
        for needed in (inside, python, plan.home / "."):
            closed = closed_ancestor(needed)
            if closed is not None:
                raise web.HTTPError(
                    500,
                    "%s",
                    f"{needed} is out of reach of the user accounts: the folder {closed} "
                    "is closed to other accounts. Run KioskHub from a folder that other "
                    f"accounts may enter, or allow it with `chmod o+x {closed}`.",
                )


def open_log(path: Path):
    """The server's log, capped and rotated (``server_log``), in a folder only root may read."""
    return server_log.open_capped_log(path)


def log_tail(path: Path, lines: int) -> str:
    return server_log.tail(path, lines)
