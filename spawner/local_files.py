"""The local backend's work on files (home, data folders, server log), run off the event loop.

Each function here touches the file system and may wait on it; the spawner calls them
through ``in_thread`` so that the hub's event loop never blocks on a slow disk or NFS home.
"""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

from tornado import web

from .home import prepare_home
from .launch_spec import LaunchSpec
from .local_accounts import closed_ancestor
from .local_plan import LocalLaunch


async def in_thread(function, *args):
    """``function(*args)`` in a worker thread."""
    return await asyncio.to_thread(functools.partial(function, *args))


async def prepare_server_files(spec: LaunchSpec, plan: LocalLaunch) -> list[str]:
    """Home folder, examples and data folders of ``plan``; the examples copied."""
    return await in_thread(_prepare_server_files, spec, plan)


def _prepare_server_files(spec: LaunchSpec, plan: LocalLaunch) -> list[str]:
    account = plan.account
    copied = prepare_home(spec, (account.uid, account.gid) if account else None)
    check_environment(plan)
    prepare_data_folders(plan)
    return copied


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
        python = (Path(plan.env["VIRTUAL_ENV"]) / "bin" / "python").resolve()
        for needed in (server, python, plan.home / "."):
            closed = closed_ancestor(needed)
            if closed is not None:
                raise web.HTTPError(
                    500,
                    "%s",
                    f"{needed} is out of reach of the user accounts: the folder {closed} "
                    "is closed to other accounts. Run KioskHub from a folder that other "
                    f"accounts may enter, or allow it with `chmod o+x {closed}`.",
                )


def prepare_data_folders(plan: LocalLaunch) -> None:
    for name, target in plan.home_links:
        link = plan.home / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    for bind in plan.binds:
        target = Path(bind.target)
        if target.is_symlink():
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        if plan.account and target.parent == plan.home:
            os.chown(target, plan.account.uid, plan.account.gid)


def open_log(path: Path):
    """The server's log file, in a folder only the hub's account may read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    return open(path, "wb")  # noqa: SIM115 (handed to the server process)


def log_tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
