"""The account a hub user's local server runs as: their lab identity (``auth.identity``), or
a system account of KioskHub's own (``kh-ada`` for hub user ``ada``)."""

from __future__ import annotations

import asyncio
import pwd
import shutil
import stat
from pathlib import Path

from tornado import web

from kioskhub.hub.schema.site import Site

from .launch_spec import LaunchSpec
from .local_plan import Account


def account_name(site: Site, username: str) -> str:
    return f"{site.spawner.system_user_prefix}{username}"


async def server_account(site: Site, spec: LaunchSpec) -> Account:
    """The lab identity of ``spec`` as it is (no account is created for it), or the user's
    kh- account (``ensure_account``)."""
    identity = spec.identity
    if identity is not None:
        return Account(identity.name, identity.uid, identity.gid, identity.supplementary_gids)
    return await ensure_account(site, spec)


async def ensure_account(site: Site, spec: LaunchSpec) -> Account:
    """The user's system account, created with ``useradd`` on their first start.

    The account database is read in a thread: NSS may ask a directory server.
    """
    name = account_name(site, spec.username)
    entry = await asyncio.to_thread(_entry, name)
    if entry is None:
        await _useradd(name, spec)
        entry = await asyncio.to_thread(pwd.getpwnam, name)
    return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _entry(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


async def _useradd(name: str, spec: LaunchSpec) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    process = await asyncio.create_subprocess_exec(
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--no-log-init",
        "--home-dir",
        str(spec.home),
        "--shell",
        "/bin/bash",
        "--comment",
        f"KioskHub user {spec.username}",
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise web.HTTPError(
            500,
            "%s",
            f"Could not create the system account {name!r} for {spec.username!r}: "
            f"{output.decode(errors='replace').strip()}",
        )


def closed_ancestor(path: Path) -> Path | None:
    """The first folder above ``path`` that other accounts cannot enter, if any."""
    for folder in reversed(path.parents):
        try:
            mode = folder.stat().st_mode
        except OSError:
            return folder
        if not mode & stat.S_IXOTH:
            return folder
    return None
