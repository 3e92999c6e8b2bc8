"""The audit log: admin actions on other users, appended to a root-only SQLite file.

One row per action: when, who (a user or a service), what, whom, and a detail. The hub
appends (``kioskhub.hub.audit_hook``, the quota override API); the page ``/hub/audit``, its
API and ``kioskhub audit`` read. Nothing here updates or deletes a row. Blocking I/O: call
it in a thread from the event loop.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path

from kioskhub.spawner.usage_store import connect_root_only

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, time);
"""


@dataclass(frozen=True)
class AuditEntry:
    """One action: ``actor`` (a ``user`` or a ``service``, ``actor_kind``) did ``action``
    to the user ``target`` at ``time`` (Unix seconds)."""

    time: float
    actor: str
    actor_kind: str
    action: str
    target: str
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


COLUMNS = tuple(f.name for f in fields(AuditEntry))


def day_start(text: str) -> float:
    """The start (UTC) of the day ``text`` (YYYY-MM-DD); ValueError naming the format."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a day: write YYYY-MM-DD") from None
    return datetime.combine(day, datetime.min.time(), UTC).timestamp()


def audit_database(state_dir: Path) -> Path:
    """Where the audit log is kept: a root-only SQLite file in the state folder."""
    return state_dir / "audit.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    """Open the log, creating it root-only (0600) without following a symlink."""
    return connect_root_only(path, SCHEMA)


def append(path: Path, entry: AuditEntry) -> None:
    with closing(connect(path)) as db:
        db.execute(
            f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
            tuple(getattr(entry, column) for column in COLUMNS),
        )


def entries(
    path: Path, since: float = 0.0, user: str = "", limit: int | None = None
) -> list[AuditEntry]:
    """Entries from ``since`` on, newest first; ``user``: those by or about that user."""
    if not path.exists():
        return []
    query = f"SELECT {', '.join(COLUMNS)} FROM audit WHERE time >= ?"
    values: list = [since]
    if user:
        query += " AND (target = ? OR (actor = ? AND actor_kind = 'user'))"
        values += [user, user]
    query += " ORDER BY time DESC, id DESC"
    if limit is not None:
        query += " LIMIT ?"
        values.append(limit)
    with closing(connect(path)) as db:
        return [AuditEntry(*row) for row in db.execute(query, values).fetchall()]
