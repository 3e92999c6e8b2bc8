"""Check and checksum the files of a kernel's data-reads record (the server's side).

The record is written by the user's own kernel, so it is the user's claim: each listed
file is checked again here before it is hashed. It must still lie, links resolved, in
one of the server's data mounts, be a regular file (opened without blocking, so a FIFO
cannot hang the hash), and have the size and modification time the kernel saw;
otherwise it gets ``"sha256": null`` and ``checksum_skipped`` says why.

Hashing is bounded: a file above ``MAX_CHECKSUM_BYTES`` is not hashed, and one request
hashes for at most ``HASH_BUDGET_S`` seconds (the files left get ``checksum_skipped``
and are hashed by a later request). Digests are remembered by (device, inode, size,
modification time), so asking again costs nothing. Run ``checksum_files`` in a thread.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from datetime import UTC, datetime

from kioskhub.extensions.data_reads import DataMount, mount_of, mount_roots

MAX_CHECKSUM_BYTES = 16 * 2**30
HASH_BUDGET_S = 60.0
CHUNK_BYTES = 2**20
MAX_REMEMBERED = 100_000

_digests: dict[tuple[int, int, int, int], str] = {}
_digests_lock = threading.Lock()


class OutOfTime(Exception):
    """The request's hashing budget ran out in the middle of a file."""


def format_gib(size: int) -> str:
    return f"{size / 2**30:g} GiB"


def mtime_text(mtime_ns: int) -> str:
    """A modification time as ISO 8601 in UTC, to the microsecond."""
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat()


def recorded_files(record: object) -> list[dict]:
    """The well-formed file entries of a record (as the kernel writes them); others dropped."""
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list):
        return []
    return [
        entry
        for entry in files
        if isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and all(type(entry.get(key)) is int and entry[key] >= 0 for key in ("size", "mtime_ns"))
    ]


def checksum_files(
    entries: list[dict],
    mounts: list[DataMount],
    *,
    max_bytes: int = MAX_CHECKSUM_BYTES,
    budget_s: float = HASH_BUDGET_S,
) -> list[dict]:
    """The answer's file list: each recorded file with its sha256, or why there is none."""
    roots = mount_roots(mounts)
    deadline = time.monotonic() + budget_s
    return [checksum_file(entry, roots, max_bytes, deadline) for entry in entries]


def checksum_file(
    entry: dict, roots: list[tuple[str, str]], max_bytes: int, deadline: float
) -> dict:
    answer = {
        "path": entry["path"],
        "mount": None,
        "relative_path": None,
        "size": entry["size"],
        "mtime": mtime_text(entry["mtime_ns"]),
        "sha256": None,
    }
    real = os.path.realpath(entry["path"])
    place = mount_of(real, roots)
    if real != entry["path"] or place is None:
        return {**answer, "checksum_skipped": "not a file in the site's data mounts"}
    answer["mount"], answer["relative_path"] = place
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        return {**answer, "checksum_skipped": f"cannot be read now: {error.strerror}"}
    with open(fd, "rb") as data:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            return {**answer, "checksum_skipped": "not a regular file"}
        if (status.st_size, status.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
            return {
                **answer,
                "checksum_skipped": (
                    f"changed since the kernel read it (now {status.st_size} bytes, "
                    f"modified {mtime_text(status.st_mtime_ns)})"
                ),
            }
        if status.st_size > max_bytes:
            return {**answer, "checksum_skipped": f"larger than {format_gib(max_bytes)}"}
        key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        with _digests_lock:
            known = _digests.get(key)
        if known is None:
            try:
                known = sha256_until(data, deadline)
            except OutOfTime:
                return {**answer, "checksum_skipped": "not hashed yet: ask again"}
            with _digests_lock:
                if len(_digests) >= MAX_REMEMBERED:
                    _digests.clear()
                _digests[key] = known
    return {**answer, "sha256": known}


def sha256_until(data, deadline: float) -> str:
    """The sha256 of an open file, or OutOfTime once ``deadline`` (monotonic) has passed."""
    digest = hashlib.sha256()
    while chunk := data.read(CHUNK_BYTES):
        digest.update(chunk)
        if time.monotonic() > deadline:
            raise OutOfTime()
    return digest.hexdigest()
