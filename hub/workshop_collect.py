"""Collect work: one archive of every participant's materials folder, with a manifest.

``collect(site, event, participants)`` writes
``<state_dir>/workshops/<event>/collected-<UTC time>.tar.gz`` (root only, 0600 in 0700
folders) holding ``<username>/<materials_folder>/…`` for each participant and a
``manifest.json``: per participant the username, display name, when it was collected, the
files and bytes taken, the symbolic links found (name and target, as text; never
followed, never archived), what was skipped, and the error for a folder that is missing,
unreadable or too large.

Root never opens a path inside a home. Each participant's folder is read by GNU tar run
as the owner the spawner gave the home (``workshop_home_owner``: on ``local`` the
participant's own account; on ``podman`` the pods' account or the participant's lab
identity; never root; uid and gid, no other groups, a bare environment), which writes a
tar stream to root's pipe. Root checks the home as an entry of the homes root it opened
(``root_paths.open_trusted_folder``; a folder of that owner, which no participant can
replace by a link); tar starts there (``--directory`` is the home, never anything in
it) and is given the materials folder's name relative to it, so a ``materials`` that is
a symbolic link is archived as a link, not followed; GNU tar archives every symbolic
link as a link and opens folders with ``O_NOFOLLOW``. On ``local`` the kernel also
checks every file tar opens against the participant's own account; on ``podman``
several homes share the pods' uid, and it is the not following that keeps a link to
another participant's home from bringing anything. Root treats the stream
as hostile (the participant could rewrite it): it reads at most
``MAX_BYTES_PER_PARTICIPANT`` of file contents and ``MAX_FILES_PER_PARTICIPANT`` entries,
for at most ``READ_TIMEOUT_S``, keeps only regular files and folders under the materials
folder with names free of ``..``, and writes them with fresh owners and modes.

Local and podman backends (homes are folders of this machine); on ``kubernetes`` a home
is a volume of a pod and ``collect`` refuses with ``CollectUnavailable``. Blocking: call
it in a thread.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from kioskhub.hub.schema.site import Site
from kioskhub.spawner import root_paths

from .workshop_home_owner import (
    HomeOwner,
    HomeOwnerRefused,
    collect_owner_of,
    unavailable_reason,
)
from .workshop_store import Event, Participant

MAX_BYTES_PER_PARTICIPANT = 100 * 2**20
"""File contents taken from one participant's folder; the rest is left, and said so."""
MAX_FILES_PER_PARTICIPANT = 10_000
READ_TIMEOUT_S = 300
"""Longest one participant's folder may take to read."""
HEADER_ALLOWANCE = 4096
"""Bytes of tar headers allowed per entry in the stream, beyond the file contents."""
ARCHIVE_PATTERN = re.compile(r"collected-\d{8}T\d{6}Z(-\d{1,3})?\.tar\.gz")
SPOOL_IN_MEMORY = 8 * 2**20
MAX_NOTES = 50


class CollectUnavailable(Exception):
    """Collecting cannot run on this site (the message says why)."""


class StreamTooLarge(Exception):
    """The participant's tar stream passed its byte allowance."""


@dataclass
class CollectedFolder:
    """One participant's line of the manifest."""

    username: str
    display_name: str
    collected: str = ""
    files: int = 0
    bytes: int = 0
    links: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def collections_folder(state_dir: Path, event_id: str) -> Path:
    if not re.fullmatch(r"[a-z0-9]{1,32}", event_id):
        raise ValueError(f"not an event id: {event_id!r}")
    return state_dir / "workshops" / event_id


def archive_name(moment: float, attempt: int = 0) -> str:
    stamp = datetime.fromtimestamp(moment, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"collected-{stamp}{f'-{attempt}' if attempt else ''}.tar.gz"


def collections(state_dir: Path, event_id: str) -> list[dict]:
    """The event's archives, newest first: name, bytes, created (ISO time)."""
    folder = collections_folder(state_dir, event_id)
    found = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if ARCHIVE_PATTERN.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            info = entry.stat(follow_symlinks=False)
            created = datetime.fromtimestamp(info.st_mtime, UTC).isoformat(timespec="seconds")
            found.append({"name": entry.name, "bytes": info.st_size, "created": created})
    return sorted(found, key=lambda c: c["name"], reverse=True)


def collection_path(state_dir: Path, event_id: str, name: str) -> Path | None:
    """The archive called ``name`` among the event's, or None: a name that is not one of
    the listing (``../``, another event's, a made-up one) names nothing."""
    if not ARCHIVE_PATTERN.fullmatch(name):
        return None
    if name not in {c["name"] for c in collections(state_dir, event_id)}:
        return None
    return collections_folder(state_dir, event_id) / name


def safe_member_name(name: str, folder: str) -> str | None:
    """``name`` of the participant's stream if it lies inside ``folder``, normalised; None
    for an absolute name, one with ``..`` or one outside the folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    parts = [p for p in path.parts if p != "."]
    if not parts or parts[0] != folder:
        return None
    return "/".join(parts)


def collect(
    site: Site, event: Event, participants: list[Participant], now: float | None = None
) -> Path:
    """Collect every participant's folder into a new archive of the event; return its path."""
    return collect_with_manifest(site, event, participants, now)[0]


def collect_with_manifest(
    site: Site, event: Event, participants: list[Participant], now: float | None = None
) -> tuple[Path, dict]:
    unavailable = unavailable_reason(site.spawner.backend, "Collecting work")
    if unavailable:
        raise CollectUnavailable(unavailable)
    now = time.time() if now is None else now
    folder = collections_folder(site.hub.state_dir, event.event_id)
    for path in (folder.parent, folder):
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    materials = site.workshops.materials_folder
    manifest = {
        "event_id": event.event_id,
        "title": event.title,
        "collected": iso(now),
        "folder": materials,
        "max_bytes_per_participant": MAX_BYTES_PER_PARTICIPANT,
        "max_files_per_participant": MAX_FILES_PER_PARTICIPANT,
        "participants": [],
    }
    homes = HomesRoot(site.home.root, open_homes(site.home.root), collect_owner_of(site))
    partial = folder / f".collecting-{os.getpid()}-{threading.get_ident()}"
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as out:
            for participant in participants:
                result = collect_participant(homes, materials, participant, out, folder)
                manifest["participants"].append(asdict(result))
            body = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
            out.addfile(archive_entry("manifest.json", len(body), now), io.BytesIO(body))
        return publish(partial, folder, now), manifest
    finally:
        partial.unlink(missing_ok=True)
        if homes.fd is not None:
            os.close(homes.fd)


@dataclass(frozen=True)
class HomesRoot:
    """The homes root: its path, its opened folder (None: there is none yet) and who
    may read a home in it (``workshop_home_owner.collect_owner``, with its I/O)."""

    path: Path
    fd: int | None
    owner_of: Callable[[str, os.stat_result], HomeOwner]


def open_homes(root: Path) -> int | None:
    """The homes root, opened and checked as root's alone; None if it does not exist."""
    try:
        return root_paths.open_trusted_folder(str(root))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CollectUnavailable(
            f"The homes root cannot be read safely: {root_paths.describe(error)}"
        ) from None


def publish(partial: Path, folder: Path, now: float) -> Path:
    """Give the finished archive its name, never replacing another's."""
    for attempt in range(1000):
        target = folder / archive_name(now, attempt)
        try:
            os.link(partial, target, follow_symlinks=False)
            return target
        except FileExistsError:
            continue
    raise FileExistsError(f"no free archive name in {folder}")


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def archive_entry(name: str, size: int, moment: float, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, mode
    info.mtime = max(0, min(int(moment), 2**33 - 1))  # a hostile stream's time fits
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def collect_participant(
    homes: HomesRoot,
    materials: str,
    participant: Participant,
    out: tarfile.TarFile,
    spool: Path,
) -> CollectedFolder:
    """Add ``participant``'s ``~/<materials>`` to ``out``; the manifest line says how it went."""
    result = CollectedFolder(participant.username, participant.display_name, iso(time.time()))
    name = participant.username
    if not name or "/" in name or name in (".", ".."):
        result.error = "not a username that names a home folder"
        return result
    try:
        if homes.fd is None:
            raise FileNotFoundError
        info = os.stat(name, dir_fd=homes.fd, follow_symlinks=False)
    except FileNotFoundError:
        result.error = "no home folder: the participant never started a server"
        return result
    if not stat.S_ISDIR(info.st_mode):
        result.error = "the home is not a folder"
        return result
    try:
        owner = homes.owner_of(name, info)
    except HomeOwnerRefused as why:
        result.error = str(why)
        return result
    as_owner = {}
    if os.geteuid() == 0:
        as_owner = {"user": owner.uid, "group": owner.gid, "extra_groups": []}
    process = subprocess.Popen(
        tar_command(homes.path / name, materials),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        start_new_session=True,
        **as_owner,
    )
    errors: list[str] = []
    broken = ""
    drain = threading.Thread(target=read_notes, args=(process.stderr, errors), daemon=True)
    drain.start()
    timed_out = threading.Event()
    watchdog = threading.Timer(READ_TIMEOUT_S, lambda: (timed_out.set(), process.kill()))
    watchdog.start()
    try:
        copy_stream(process.stdout, materials, name, out, spool, result)
    except StreamTooLarge:
        result.error = (
            f"larger than {size_text(MAX_BYTES_PER_PARTICIPANT)} or "
            f"{MAX_FILES_PER_PARTICIPANT} files; the first {result.files} files were collected"
        )
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        broken = f"the folder's stream broke off ({error})"
    finally:
        watchdog.cancel()
        process.kill()
        process.stdout.close()
        process.wait()
        drain.join(5)
    if timed_out.is_set():
        result.error = f"reading took longer than {READ_TIMEOUT_S} s; partly collected"
    result.error = result.error or folder_problem(materials, result, errors, broken)
    result.warnings = errors + ([broken] if broken and result.error != broken else [])
    return result


def folder_problem(materials: str, result: CollectedFolder, errors: list[str], broken: str):
    """The error of a participant from whom nothing was collected, or None."""
    if result.files:
        return None
    if any(link["name"] == materials for link in result.links):
        return f"~/{materials} is a symbolic link; links are not followed"
    if any("Cannot stat: No such file" in line for line in errors):
        return f"there is no ~/{materials} folder"
    if errors:
        return f"~/{materials} could not be read: {errors[0]}"
    return broken or None


def size_text(size: int) -> str:
    return f"{size // 2**20} MiB" if size >= 2**20 else f"{size} bytes"


def tar_command(home: Path, materials: str) -> list[str]:
    """GNU tar writing ``<home>/<materials>`` to stdout; it does not follow symbolic links
    (no ``--dereference``) and stays on the home's file system."""
    tar = shutil.which("tar", path="/usr/bin:/bin") or "/bin/tar"
    return [
        tar,
        "--create",
        "--file=-",
        "--format=posix",
        "--one-file-system",
        f"--directory={home}",
        "--",
        materials,
    ]


def read_notes(stream, notes: list[str]) -> None:
    """Keep tar's first complaints (without ``tar: ``), drain the rest."""
    for raw in stream:
        if len(notes) < MAX_NOTES:
            notes.append(raw.decode(errors="replace").strip().removeprefix("tar: ")[:300])
    stream.close()


class CappedReader(io.RawIOBase):
    """A pipe that raises StreamTooLarge past ``limit`` bytes."""

    def __init__(self, pipe, limit: int):
        self.pipe, self.limit, self.taken = pipe, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.pipe.read(min(len(buffer), self.limit - self.taken + 1))
        self.taken += len(data)
        if self.taken > self.limit:
            raise StreamTooLarge
        buffer[: len(data)] = data
        return len(data)


def copy_stream(
    pipe, materials: str, username: str, out: tarfile.TarFile, spool: Path, result
) -> None:
    """Copy the folders and regular files of the participant's tar stream into ``out``
    under ``<username>/``; note links and everything else in ``result``."""
    limit = MAX_BYTES_PER_PARTICIPANT + MAX_FILES_PER_PARTICIPANT * HEADER_ALLOWANCE
    reader = io.BufferedReader(CappedReader(pipe, limit), 2**16)
    entries = 0
    with tarfile.open(fileobj=reader, mode="r|") as stream:
        for member in stream:
            entries += 1
            if entries > MAX_FILES_PER_PARTICIPANT:
                raise StreamTooLarge
            name = safe_member_name(member.name, materials)
            if name is None:
                note(result.skipped, member.name[:300])
                continue
            if member.issym():
                note(result.links, {"name": name, "target": member.linkname[:300]})
                continue
            if member.isdir():
                entry = archive_entry(f"{username}/{name}", 0, member.mtime, 0o755)
                entry.type = tarfile.DIRTYPE
                out.addfile(entry)
                continue
            if not member.isreg():
                note(result.skipped, name)
                continue
            if result.bytes + member.size > MAX_BYTES_PER_PARTICIPANT:
                raise StreamTooLarge
            mode = 0o755 if member.mode & 0o100 else 0o644
            copy_file(stream, member, f"{username}/{name}", mode, out, spool)
            result.files += 1
            result.bytes += member.size


def copy_file(stream, member, name: str, mode: int, out: tarfile.TarFile, spool: Path) -> None:
    """Read the whole file first, so that a stream cut short cannot leave half an entry."""
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=spool) as held:
        source = stream.extractfile(member)
        shutil.copyfileobj(source, held, 2**20)
        if held.tell() != member.size:
            raise EOFError(f"{name}: the stream ended inside the file")
        held.seek(0)
        out.addfile(archive_entry(name, member.size, member.mtime, mode), held)


def note(notes: list, item) -> None:
    if len(notes) < MAX_NOTES:
        notes.append(item)
