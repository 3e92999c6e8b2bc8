"""The lab identity a user's server was started as, recorded for the Dask Gateway.

With ``auth.identity`` ``claims`` or ``nss`` the spawner resolves each user's identity at
start (``lab_identity``); the gateway (root, on the same machine) runs that user's Dask
clusters as exactly that identity, and cannot resolve it itself: it holds no scope to read
auth state, and nothing in the user's server or environment may be trusted for it. So the
spawner records it, as root, in ``<hub.state_dir>/identities/<username>.json`` (folder 0700,
file 0600, both root's), and the gateway reads it from there.

``record_path``, ``serialise`` and ``parse`` are pure. ``write_record``, ``remove_record``
and ``read_record`` do blocking I/O (run them in a thread); none follows a link: the folder
is opened with ``O_NOFOLLOW``, a record is written to a fresh file and renamed over the old
name (which replaces a link there, never writes through it), and a record is read only if
it is a regular file that no one but its owner, the reader's own account, may write.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from pathlib import Path

from kioskhub.hub.schema.site import USERNAME_PATTERN

from .lab_identity import LabIdentity

FOLDER = "identities"
FOLDER_MODE = 0o700
FILE_MODE = 0o600


class RecordError(Exception):
    """A record that cannot be written or trusted; the message names the path and why."""


def record_path(state_dir: Path, username: str) -> Path:
    """``<state_dir>/identities/<username>.json``; ValueError for a name that is no hub
    username (it could name another folder)."""
    return state_dir / FOLDER / record_name(username)


def record_name(username: str) -> str:
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        raise ValueError(f"{username!r} is not a hub username")
    return f"{username}.json"


def serialise(identity: LabIdentity) -> bytes:
    return json.dumps(
        {
            "uid": identity.uid,
            "gid": identity.gid,
            "supplementary_gids": list(identity.supplementary_gids),
            "name": identity.name,
        },
        sort_keys=True,
    ).encode()


def parse(data: bytes) -> LabIdentity:
    """The identity in a record; ValueError if it is not one."""
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    supplementary = record.get("supplementary_gids")
    ids = [
        record.get("uid"),
        record.get("gid"),
        *(supplementary if isinstance(supplementary, list) else []),
    ]
    if not isinstance(supplementary, list) or not all(
        isinstance(value, int) and not isinstance(value, bool) for value in ids
    ):
        raise ValueError("uid, gid and supplementary_gids must be whole numbers")
    if not isinstance(record.get("name"), str) or not record["name"]:
        raise ValueError("name must be a non-empty string")
    return LabIdentity(
        uid=record["uid"],
        gid=record["gid"],
        supplementary_gids=tuple(record["supplementary_gids"]),
        name=record["name"],
    )


def write_record(state_dir: Path, username: str, identity: LabIdentity) -> None:
    """Record ``identity`` for ``username``, atomically, replacing an earlier record."""
    name = record_name(username)
    folder = _open_folder(state_dir, create=True)
    temporary = f".{name}.{secrets.token_hex(8)}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(temporary, flags, FILE_MODE, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(serialise(identity))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            _unlink(temporary, folder)
            raise
    finally:
        os.close(folder)


def remove_record(state_dir: Path, username: str) -> None:
    """Remove ``username``'s record, if any (a site that runs kh- accounts again, or a
    user who has no valid identity any more)."""
    name = record_name(username)
    try:
        folder = _open_folder(state_dir, create=False)
    except FileNotFoundError:
        return
    try:
        _unlink(name, folder)
    finally:
        os.close(folder)


def read_record(state_dir: Path, username: str) -> LabIdentity | None:
    """``username``'s recorded identity; None if there is none. RecordError for a record
    that is not a regular file of the reader's own account, writable by it alone."""
    name = record_name(username)
    path = state_dir / FOLDER / name
    try:
        folder = _open_folder(state_dir, create=False)
    except FileNotFoundError:
        return None
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise RecordError(f"{path} cannot be opened as a file ({error.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            _check_owned(os.fstat(handle.fileno()), path, stat.S_ISREG, "a regular file")
            data = handle.read(64 * 1024)
    finally:
        os.close(folder)
    try:
        return parse(data)
    except ValueError as error:
        raise RecordError(f"{path} is no identity record: {error}") from None


def _open_folder(state_dir: Path, *, create: bool) -> int:
    """The identities folder, opened without following a link; created (0700) if asked.
    Its owner and mode are checked: the reader's own account, writable by it alone."""
    path = state_dir / FOLDER
    if create:
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, FOLDER_MODE)
        except FileExistsError:
            pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise RecordError(
            f"{path} is not a folder ({error.strerror}): remove it, and KioskHub makes the "
            "folder anew at the next server start"
        ) from None
    try:
        _check_owned(os.fstat(fd), path, stat.S_ISDIR, "a folder")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_owned(status: os.stat_result, path: Path, is_kind, kind: str) -> None:
    if not is_kind(status.st_mode):
        raise RecordError(f"{path} is not {kind}")
    if status.st_uid != os.geteuid() or status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RecordError(
            f"{path} is owned by uid {status.st_uid} with mode "
            f"{stat.S_IMODE(status.st_mode):o}: only uid {os.geteuid()} may write it; "
            "remove it, and KioskHub records it anew at the next server start"
        )


def _unlink(name: str, folder: int) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass
