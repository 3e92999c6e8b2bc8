"""Preparing a user's home folder: create it, hand out the examples once, make mount points,
pull the environment's repository files (``repository_pull``).

Root only creates the home folder itself and hands it over (``root_paths``). Everything
inside it is done by a child process that has already become the user (uid, gid, no
supplementary groups but the private environment's, no new privileges): it copies the
examples, reads and writes the examples ledger, makes the folders that data is mounted on
and pulls the repository's files. The kernel checks
each of its accesses, so a symlink the user planted reaches only what the user could
reach anyway. The hub waits for the child without blocking its event loop.

The child is ``home_setup`` (``python -I -m kioskhub.spawner.home_setup REQUEST_JSON``);
it prints a JSON reply of at most a few KiB.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from tornado import web

from . import root_paths
from .launch_spec import LaunchSpec, RepositoryFiles
from .local_plan import venv_group

log = logging.getLogger("JupyterHub")

REPLY_MAX_BYTES = 64 * 2**10
SETUP_TIMEOUT_S = 120


class HomeError(web.HTTPError):
    """The home folder could not be prepared; the message says why and what to do."""

    def __init__(self, message: str):
        super().__init__(500, "%s", message)


async def prepare_home(
    spec: LaunchSpec,
    owner: tuple[int, int] | None = None,
    *,
    mount_points: tuple[str, ...] = (),
    links: tuple[tuple[str, str], ...] = (),
    groups: tuple[int, ...] = (),
) -> list[str]:
    """Create ``spec.home`` (0700), copy in the examples it has never received, and pull
    ``spec.repository_files``.

    With ``owner`` (uid, gid) the home is handed to that account and the work inside
    it runs as that account, with ``groups`` besides (a private environment's, to read its
    repository files). ``mount_points`` are folders made in the home for data
    mounts (a symlink there is replaced); ``links`` are (name, target) symlinks made
    where nothing is. Returns the names of the examples copied this time; problems
    with the ledger are logged and skip the examples, they do not stop the server; nor does
    a failed pull, which leaves the user's files as they were.
    """
    await asyncio.to_thread(_create_home, spec.home, owner)
    files = spec.repository_files
    request = {
        "home": str(spec.home),
        "examples_source": str(spec.examples_source) if spec.examples_source else None,
        "examples_target": spec.examples_target,
        "mount_points": list(mount_points),
        "links": [list(link) for link in links],
        "repository_files": (
            {"source": str(files.source), "commit": files.commit, "folder": files.folder}
            if files
            else None
        ),
    }
    reply = await _run_as_owner(request, owner, groups)
    if reply.get("pulled"):
        log.info("Home folder %s: %s", spec.home, str(reply["pulled"])[:1000])
    for warning in reply.get("warnings", []):
        log.warning("Home folder %s: %s", spec.home, str(warning)[:500])
    if reply.get("error"):
        raise HomeError(f"Your home folder could not be prepared: {str(reply['error'])[:500]}")
    return [str(name) for name in reply.get("copied", [])]


def files_group(files: RepositoryFiles | None, gids: range) -> tuple[int, ...]:
    """The group that opens the folder holding ``files``' kept repository (a private venv,
    or an image's holder: ``<holder>/kioskhub-repository/<commit>.git``), by the rule of
    ``local_plan.venv_group``: only a root folder closed to one environment gid. Blocking."""
    if files is None:
        return ()
    try:
        return venv_group(os.lstat(files.source.parent.parent), gids)
    except OSError:
        return ()


def _create_home(home: Path, owner: tuple[int, int] | None) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    if owner is None:
        home.mkdir(exist_ok=True)
        os.chmod(home, 0o700)
        return
    try:
        parent = root_paths.open_trusted_folder(str(home.parent))
        try:
            root_paths.hand_over_folder(parent, home.name, root_paths.Owner(*owner))
        finally:
            os.close(parent)
    except OSError as error:
        raise HomeError(
            f"Your home folder {home} could not be prepared: {root_paths.describe(error)}"
        ) from None


async def _run_as_owner(
    request: dict, owner: tuple[int, int] | None, groups: tuple[int, ...] = ()
) -> dict:
    as_owner = {}
    if owner is not None and os.geteuid() == 0:
        as_owner = {"user": owner[0], "group": owner[1], "extra_groups": list(groups)}
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-m",
            "kioskhub.spawner.home_setup",
            json.dumps(request),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            **as_owner,
        )
    except OSError as error:
        raise HomeError(
            f"Your home folder could not be prepared: {sys.executable} cannot run as your "
            f"account ({root_paths.describe(error)}); the site's admins must install "
            "KioskHub in a folder that other accounts may enter."
        ) from None
    try:
        output = await asyncio.wait_for(_read_capped(process.stdout), SETUP_TIMEOUT_S)
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise HomeError(
            f"Preparing your home folder took longer than {SETUP_TIMEOUT_S} s; "
            "a very large examples folder or repository, or a stuck file system?"
        ) from None
    if len(output) > REPLY_MAX_BYTES:
        process.kill()
        raise HomeError("Preparing your home folder failed: its reply is too long")
    try:
        reply = json.loads(output)
        if not isinstance(reply, dict):
            raise ValueError
    except ValueError:
        text = output.decode(errors="replace")[-500:]
        raise HomeError(f"Preparing your home folder failed: {text}") from None
    return reply


async def _read_capped(stream: asyncio.StreamReader) -> bytes:
    """Until EOF, or one byte past REPLY_MAX_BYTES: the child runs as the user."""
    chunks, size = [], 0
    while size <= REPLY_MAX_BYTES:
        chunk = await stream.read(REPLY_MAX_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
