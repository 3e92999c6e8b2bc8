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
    """The user's system account, created with ``useradd`` on their first start."""
    return await ensure_system_account(site, spec.username, spec.home)


async def ensure_system_account(site: Site, username: str, home: Path) -> Account:
    """The system account of hub user ``username``, created if missing (also ahead of a
    first start, by the workshops' pre-warming).

    The account database is read in a thread: NSS may ask a directory server.
    """
    name = account_name(site, username)
    entry = await asyncio.to_thread(_entry, name)
    if entry is None:
        await _useradd(name, username, home)
        entry = await asyncio.to_thread(pwd.getpwnam, name)
    return Account(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def account_comment(username: str) -> str:
    """The comment (GECOS) of the accounts KioskHub creates; removal checks it."""
    return f"KioskHub user {username}"


async def remove_system_account(site: Site, username: str, home: Path) -> str:
    """Remove the system account that ``ensure_system_account`` created for ``username``
    (``userdel``, its home is not touched here): what was done, for the log.

    Only an account that is exactly KioskHub's own for this user is removed: its name,
    comment and home as ``useradd`` above wrote them; anything else is refused
    (``AccountNotOurs``). ``userdel`` refuses while a process of the account runs.
    """
    name = account_name(site, username)
    entry = await asyncio.to_thread(_entry, name)
    if entry is None:
        return f"no system account {name}"
    if entry.pw_gecos != account_comment(username) or entry.pw_dir != str(home):
        raise AccountNotOurs(
            f"the system account {name} (comment {entry.pw_gecos!r}, home {entry.pw_dir}) "
            f"is not the one KioskHub made for {username}; left as it is"
        )
    userdel = shutil.which("userdel") or "/usr/sbin/userdel"
    process = await asyncio.create_subprocess_exec(
        userdel, name, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise AccountNotOurs(
            f"userdel {name} failed ({process.returncode}): "
            f"{output.decode(errors='replace').strip()[:300]}"
        )
    return f"removed the system account {name} (uid {entry.pw_uid})"


class AccountNotOurs(Exception):
    """A system account was not removed; the message says why."""


def _entry(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


async def _useradd(name: str, username: str, home: Path) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    process = await asyncio.create_subprocess_exec(
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--no-log-init",
        "--home-dir",
        str(home),
        "--shell",
        "/bin/bash",
        "--comment",
        account_comment(username),
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise web.HTTPError(
            500,
            "%s",
            f"Could not create the system account {name!r} for {username!r}: "
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
