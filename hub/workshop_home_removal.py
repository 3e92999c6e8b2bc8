"""Removing a temporary participant's home folder without root ever following a link in it.

The home is a tree its participant could write to, so root does not walk it. A child
process that has become the home's owner (``workshop_home_owner.removal_owner``: the
participant's ``kh-`` account on ``local``, the pods' account on ``podman``; its uid and
gid, no supplementary groups, no new privileges) empties the folder, removing symbolic
links as links and never following one (``shutil.rmtree``'s descriptor walk); on
``local`` the kernel also checks each unlink against the participant's own account.
On ``podman`` every participant's home belongs to the pods' account, so the kernel
would let the child delete another participant's files: it is the not following that
keeps a link to another home out of reach, and the child is given the one home that
root checked. Root then removes the folder itself, now empty, with ``rmdir`` relative
to the homes root it opened and checked (``root_paths.open_trusted_folder``): ``rmdir``
removes only an empty folder and never follows a link. What the owner could not delete
(files of another account let in) is left, with the folder, and reported.

On ``local`` the same child also deletes the account's own entries in the shared
temporary folders (``SHARED_TEMP``): the uid of a removed system account is given to the
next one made, who would otherwise own them. A ``shared`` owner (the pods' account,
which owns other participants' homes and keeps its uid) does not: those entries are not
this participant's.

Run as ``python -I -m kioskhub.hub.workshop_home_removal HOME [--home-only]`` (the child).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import stat
import sys
from pathlib import Path

from kioskhub.spawner import root_paths
from kioskhub.spawner.local_launcher import forbid_new_privileges

CHILD_TIMEOUT_S = 300
SHARED_TEMP = ("/tmp", "/var/tmp", "/dev/shm")


class HomeNotRemoved(Exception):
    """The home folder was left (in part); the message says why."""


async def remove_home(home: Path, uid: int, gid: int, *, shared: bool = False) -> str:
    """Remove ``home``, which must be a folder of account ``uid``: emptied by a child as
    ``uid``/``gid``, then removed by root. ``shared``: ``uid`` owns other homes too, so its
    entries in the shared temporary folders are left. What was done, for the log;
    HomeNotRemoved when something is left."""
    parent_fd = await asyncio.to_thread(root_paths.open_trusted_folder, str(home.parent))
    try:
        try:
            info = os.stat(home.name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return f"no home folder {home}"
        if not stat.S_ISDIR(info.st_mode):
            raise HomeNotRemoved(f"{home} is not a folder; left as it is")
        if info.st_uid != uid:
            raise HomeNotRemoved(
                f"{home} belongs to uid {info.st_uid}, not to the participant's {uid}; "
                "left as it is"
            )
        reply = await _empty_as_owner(home, uid, gid, shared)
        try:
            os.rmdir(home.name, dir_fd=parent_fd)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise HomeNotRemoved(
                    f"{home} is not empty after its participant emptied it "
                    f"({reply.get('left', '?')} entries they could not delete, e.g. another "
                    "account's files); left as it is"
                ) from None
            raise HomeNotRemoved(f"{home}: {root_paths.describe(error)}") from None
        return f"removed the home folder {home}"
    finally:
        os.close(parent_fd)


async def _empty_as_owner(home: Path, uid: int, gid: int, shared: bool) -> dict:
    as_owner = {"user": uid, "group": gid, "extra_groups": []} if os.geteuid() == 0 else {}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-m",
        "kioskhub.hub.workshop_home_removal",
        str(home),
        *(["--home-only"] if shared else []),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        **as_owner,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise HomeNotRemoved(f"emptying {home} took longer than {CHILD_TIMEOUT_S} s") from None
    try:
        reply = json.loads(output[-4096:])
    except ValueError:
        text = output.decode(errors="replace")[-300:]
        raise HomeNotRemoved(f"emptying {home} failed: {text}") from None
    return reply if isinstance(reply, dict) else {}


# ---- the child, running as the home's owner ----------------------------------------------


def empty_folder(home: Path) -> int:
    """Delete everything in ``home`` that its owner may; the number of entries left.

    ``shutil.rmtree`` removes links as links; a folder its owner made read-only is
    opened up (the owner may chmod it) and tried again.
    """

    def open_up_and_retry(function, path, _error):
        parent = os.path.dirname(path)
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
            shutil.rmtree(path, ignore_errors=True)
        else:
            function(path)

    os.chmod(home, stat.S_IRWXU)
    for entry in os.scandir(home):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, onerror=open_up_and_retry)
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    return len(os.listdir(home))


def remove_own_entries(folder: str) -> int:
    """Delete the entries of ``folder`` (a sticky, shared one) that belong to this
    process's uid; how many went. Never as root."""
    uid, removed = os.getuid(), 0
    if uid == 0:
        return 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def main(argv: list[str]) -> int:
    try:
        forbid_new_privileges()
        home_only = argv[2:] == ["--home-only"]
        temp = 0 if home_only else sum(remove_own_entries(folder) for folder in SHARED_TEMP)
        reply = {"left": empty_folder(Path(argv[1])), "temp_removed": temp}
    except OSError as error:
        reply = {"error": root_paths.describe(error)}
    print(json.dumps(reply))
    return 1 if reply.get("error") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
