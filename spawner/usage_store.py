"""The usage records: one row per server run, in a root-only SQLite file of the state folder.

A record is reserved before a server starts (``reserve``, where the quotas are checked),
counted from when it has started (``mark_started``) or removed if the start failed
(``discard``), updated while it runs (CPU seconds, memory peak, ``last_seen``) and closed
when it is gone; ``end`` is None while it is open. The hub
(through the spawner) writes; ``kioskhub usage``, quotas and reports read ``records``.
Blocking I/O: call it in a thread from the event loop.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    record_id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    groups TEXT NOT NULL,
    server_name TEXT NOT NULL,
    backend TEXT NOT NULL,
    profile TEXT NOT NULL,
    environment TEXT NOT NULL,
    environment_ref TEXT NOT NULL,
    cpu_cores REAL NOT NULL,
    memory_requested INTEGER NOT NULL,
    gpu_count INTEGER NOT NULL,
    start REAL NOT NULL,
    last_seen REAL NOT NULL,
    "end" REAL,
    cpu_seconds REAL NOT NULL,
    memory_peak INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'server',
    disk_gb INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_times ON usage (start, "end");
CREATE INDEX IF NOT EXISTS usage_open ON usage ("end") WHERE "end" IS NULL;
CREATE TABLE IF NOT EXISTS quota_overrides (
    username TEXT PRIMARY KEY,
    limits TEXT NOT NULL,
    until REAL,
    set_by TEXT NOT NULL,
    set_at REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class UsageRecord:
    """One server's (or Dask cluster's, ``kind``) use of the site, times in Unix seconds."""

    record_id: str
    username: str
    groups: str
    server_name: str
    backend: str
    profile: str
    environment: str
    environment_ref: str
    cpu_cores: float
    memory_requested: int
    gpu_count: int
    start: float
    last_seen: float
    end: float | None
    cpu_seconds: float
    memory_peak: int
    kind: str = "server"
    disk_gb: int = 0
    """The disk of the server's VM (its flavor's), in GB; 0 where none is its own."""

    @property
    def wall_seconds(self) -> float:
        return max(0.0, (self.end if self.end is not None else self.last_seen) - self.start)

    def as_dict(self) -> dict:
        return {**asdict(self), "wall_seconds": round(self.wall_seconds, 3)}


COLUMNS = tuple(f.name for f in fields(UsageRecord))
QUOTED_COLUMNS = ", ".join(f'"{column}"' for column in COLUMNS)


def new_record_id() -> str:
    return str(uuid.uuid4())


def connect(path: Path) -> sqlite3.Connection:
    """Open the store, creating it root-only (0600) without following a symlink; a store
    of an earlier version gets the columns added since."""
    db = connect_root_only(path, SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
    if "disk_gb" not in columns:
        db.execute("ALTER TABLE usage ADD COLUMN disk_gb INTEGER NOT NULL DEFAULT 0")
    return db


def size_record(
    path: Path, record_id: str, cpu_cores: float, memory_requested: int, disk_gb: int
) -> None:
    """Record what an open record's server really got (a VM's flavor)."""
    with closing(connect(path)) as db:
        db.execute(
            "UPDATE usage SET cpu_cores = ?, memory_requested = ?, disk_gb = ? "
            'WHERE record_id = ? AND "end" IS NULL',
            (cpu_cores, memory_requested, disk_gb, record_id),
        )


def connect_root_only(path: Path, schema: str) -> sqlite3.Connection:
    """Open the SQLite file ``path`` with ``schema``, creating it root-only (0600) and
    refusing a symlink in its place (the audit log uses it too)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.executescript(schema)
    return db


def open_record(path: Path, record: UsageRecord) -> None:
    with closing(connect(path)) as db:
        placeholders = ", ".join("?" for _ in COLUMNS)
        db.execute(
            f"INSERT OR REPLACE INTO usage ({QUOTED_COLUMNS}) VALUES ({placeholders})",
            tuple(getattr(record, c) for c in COLUMNS),
        )


def update_record(
    path: Path,
    record_id: str,
    seen: float,
    cpu_seconds: float | None,
    memory_peak: int | None,
    end: float | None = None,
) -> bool:
    """Move an open record on to ``seen``; close it when ``end`` is given.

    Counters only grow: a value that cannot be read (None) or a smaller one (a group
    made anew) keeps the recorded one. A closed record is not changed again (False).
    """
    with closing(connect(path)) as db:
        return (
            db.execute(
                'UPDATE usage SET last_seen = MAX(last_seen, ?), "end" = ?, '
                "cpu_seconds = MAX(cpu_seconds, COALESCE(?, 0)), "
                "memory_peak = MAX(memory_peak, COALESCE(?, 0)) "
                'WHERE record_id = ? AND "end" IS NULL',
                (seen, end, cpu_seconds, memory_peak, record_id),
            ).rowcount
            > 0
        )


def close_stale(path: Path, seen_before: float, kind: str | None = None) -> int:
    """Close every open record last seen before ``seen_before`` at its last-seen time.

    For servers that no spawner re-adopted after a hub restart, or (``kind="dask"``)
    clusters gone with a gateway that stopped; ``kind`` None: records of every kind.
    Returns how many.
    """
    with closing(connect(path)) as db:
        cursor = db.execute(
            'UPDATE usage SET "end" = last_seen WHERE "end" IS NULL AND last_seen < ? '
            "AND kind = COALESCE(?, kind)",
            (seen_before, kind),
        )
        return cursor.rowcount


def name_record(path: Path, record_id: str, server_name: str) -> None:
    """Name the server (or cluster) of a record reserved before its name was known."""
    with closing(connect(path)) as db:
        db.execute("UPDATE usage SET server_name = ? WHERE record_id = ?", (server_name, record_id))


def records(path: Path, since: float = 0.0, until: float | None = None) -> list[UsageRecord]:
    """Records that overlap [since, until), oldest first; open ones count up to now."""
    if not path.exists():
        return []
    with closing(connect(path)) as db:
        rows = db.execute(
            f"SELECT {QUOTED_COLUMNS} FROM usage "
            'WHERE COALESCE("end", last_seen) >= ? AND start < ? ORDER BY start, record_id',
            (since, until if until is not None else float("inf")),
        ).fetchall()
    return [UsageRecord(*row) for row in rows]


def open_record_of(path: Path, record_id: str) -> UsageRecord | None:
    """The record ``record_id`` while it is open, else None."""
    with closing(connect(path)) as db:
        row = db.execute(
            f'SELECT {QUOTED_COLUMNS} FROM usage WHERE record_id = ? AND "end" IS NULL',
            (record_id,),
        ).fetchone()
    return UsageRecord(*row) if row else None


def last_seen(path: Path, record_id: str) -> float | None:
    with closing(connect(path)) as db:
        row = db.execute("SELECT last_seen FROM usage WHERE record_id = ?", (record_id,)).fetchone()
    return row[0] if row else None


def reserve(
    path: Path,
    record: UsageRecord,
    decide: Callable[[list[UsageRecord], list[UsageRecord]], T | None],
    since: float,
    replaces: str = "",
) -> T | None:
    """Open ``record`` unless ``decide`` refuses it, in one transaction (hub and gateway).

    ``decide(open_records, records_since)`` sees every open record (but ``replaces``) and
    every record that overlaps [``since``, now]; what it returns that is not None (a
    refusal) is returned and nothing is written. ``replaces``: an open record that
    ``record`` takes over from (a Dask cluster resized), closed at ``record.start``.
    """
    with closing(connect(path)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            found = _current(db, since)
            open_now = [r for r in found if r.end is None and r.record_id != replaces]
            refusal = decide(open_now, found)
            if refusal is not None:
                db.execute("ROLLBACK")
                return refusal
            if replaces:
                db.execute(
                    'UPDATE usage SET "end" = ?, last_seen = MAX(last_seen, ?) '
                    'WHERE record_id = ? AND "end" IS NULL',
                    (record.start, record.start, replaces),
                )
            placeholders = ", ".join("?" for _ in COLUMNS)
            db.execute(
                f"INSERT INTO usage ({QUOTED_COLUMNS}) VALUES ({placeholders})",
                tuple(getattr(record, c) for c in COLUMNS),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return None


def _current(db: sqlite3.Connection, since: float) -> list[UsageRecord]:
    rows = db.execute(
        f'SELECT {QUOTED_COLUMNS} FROM usage WHERE "end" IS NULL OR "end" >= ? '
        "ORDER BY start, record_id",
        (since,),
    ).fetchall()
    return [UsageRecord(*row) for row in rows]


def current_records(path: Path, since: float) -> list[UsageRecord]:
    """Every open record and every record that ended at ``since`` or later (what
    ``reserve``'s ``decide`` sees), for showing a user their quotas."""
    if not path.exists():
        return []
    with closing(connect(path)) as db:
        return _current(db, since)


def discard(path: Path, record_id: str) -> None:
    """Remove a reservation whose server never started (a failed spawn)."""
    with closing(connect(path)) as db:
        db.execute("DELETE FROM usage WHERE record_id = ?", (record_id,))


def mark_started(path: Path, record_id: str, now: float) -> None:
    """A reserved server has started: its wall time counts from ``now``."""
    with closing(connect(path)) as db:
        db.execute(
            'UPDATE usage SET start = ?, last_seen = ? WHERE record_id = ? AND "end" IS NULL',
            (now, now, record_id),
        )


@dataclass(frozen=True)
class QuotaOverride:
    """An admin's override of one user's limits (JSON of QuotaLimits keys), until a time."""

    username: str
    limits: str
    until: float | None
    set_by: str
    set_at: float
    reason: str = ""


def set_override(path: Path, override: QuotaOverride) -> None:
    with closing(connect(path)) as db:
        db.execute(
            "INSERT OR REPLACE INTO quota_overrides "
            "(username, limits, until, set_by, set_at, reason) VALUES (?, ?, ?, ?, ?, ?)",
            tuple(getattr(override, f.name) for f in fields(QuotaOverride)),
        )


def remove_override(path: Path, username: str) -> bool:
    with closing(connect(path)) as db:
        return (
            db.execute("DELETE FROM quota_overrides WHERE username = ?", (username,)).rowcount > 0
        )


def overrides(path: Path, now: float) -> dict[str, QuotaOverride]:
    """The overrides in force at ``now``, by username."""
    if not path.exists():
        return {}
    with closing(connect(path)) as db:
        rows = db.execute(
            "SELECT username, limits, until, set_by, set_at, reason FROM quota_overrides "
            "WHERE until IS NULL OR until > ?",
            (now,),
        ).fetchall()
    return {row[0]: QuotaOverride(*row) for row in rows}
