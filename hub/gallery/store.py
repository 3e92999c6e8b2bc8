"""The gallery's database: entries, versions and reviewer links in SQLite.

``<state_dir>/gallery.sqlite`` (0600, root's). Every function here blocks: the service
calls them in a thread (``asyncio.to_thread``). A version's files live beside it on disk
(``version_files``); the database holds their manifest. A reviewer link's secret is stored
only as its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .access import DRAFT, Entry, ReviewerLink

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    title TEXT NOT NULL,
    abstract TEXT NOT NULL,
    tags TEXT NOT NULL,
    visibility TEXT NOT NULL,
    environment TEXT NOT NULL,
    latest INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    entry_id INTEGER NOT NULL REFERENCES entries(id),
    number INTEGER NOT NULL,
    author TEXT NOT NULL,
    created REAL NOT NULL,
    title TEXT NOT NULL,
    abstract TEXT NOT NULL,
    manifest TEXT NOT NULL,
    pinning TEXT NOT NULL,
    claims TEXT NOT NULL,
    PRIMARY KEY (entry_id, number)
);
CREATE TABLE IF NOT EXISTS links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id INTEGER NOT NULL REFERENCES entries(id),
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    anonymous INTEGER NOT NULL,
    revoked REAL
);
"""


@dataclass(frozen=True)
class EntryRow:
    entry_id: int
    author: str
    title: str
    abstract: str
    tags: tuple[str, ...]
    visibility: str
    environment: str
    latest: int
    created: float
    updated: float

    @property
    def rules(self) -> Entry:
        return Entry(self.entry_id, self.author, self.visibility)


def database(state_dir: Path) -> Path:
    return Path(state_dir) / "gallery.sqlite"


def open_database(path: Path) -> None:
    """Create the database (0600) and its tables when missing."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    os.chmod(path, 0o600)
    with transaction(path) as db:
        db.executescript(SCHEMA)


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    return db


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection whose work is committed (or rolled back) and which is closed after."""
    db = connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _entry(row: sqlite3.Row) -> EntryRow:
    return EntryRow(
        row["id"], row["author"], row["title"], row["abstract"], tuple(json.loads(row["tags"])),
        row["visibility"], row["environment"], row["latest"], row["created"], row["updated"],
    )  # fmt: skip


def _version(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "entry_id": row["entry_id"],
        "number": row["number"],
        "author": row["author"],
        "created": row["created"],
        "title": row["title"],
        "abstract": row["abstract"],
        "manifest": json.loads(row["manifest"]),
        "pinning": json.loads(row["pinning"]),
        "claims": json.loads(row["claims"]),
    }


def create_entry(path: Path, author: str, visibility: str | None, version: dict) -> int:
    """A new entry with its first version (``version``: title, abstract, tags, manifest,
    pinning, claims); returns the entry's id. Its files must be written first."""
    now = time.time()
    with transaction(path) as db:
        cursor = db.execute(
            "INSERT INTO entries (author, title, abstract, tags, visibility, environment, latest,"
            " created, updated) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (author, version["title"], version["abstract"], json.dumps(version["tags"]),
             visibility or DRAFT, version["pinning"]["environment"], now, now),
        )  # fmt: skip
        entry_id = cursor.lastrowid
        _insert_version(db, entry_id, 1, author, now, version)
    return entry_id


def next_version_number(path: Path, entry_id: int) -> int:
    with transaction(path) as db:
        row = db.execute("SELECT latest FROM entries WHERE id = ?", (entry_id,)).fetchone()
    return row["latest"] + 1


def next_entry_id(path: Path) -> int:
    """The id the next entry will get (AUTOINCREMENT never reuses one)."""
    with transaction(path) as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
    return (row["seq"] if row else 0) + 1


def add_version(path: Path, entry_id: int, number: int, author: str, version: dict) -> None:
    """Version ``number`` of an entry; the entry takes its title, abstract, tags and environment."""
    now = time.time()
    with transaction(path) as db:
        _insert_version(db, entry_id, number, author, now, version)
        db.execute(
            "UPDATE entries SET title = ?, abstract = ?, tags = ?, environment = ?, latest = ?,"
            " updated = ? WHERE id = ?",
            (version["title"], version["abstract"], json.dumps(version["tags"]),
             version["pinning"]["environment"], number, now, entry_id),
        )  # fmt: skip


def _insert_version(db, entry_id: int, number: int, author: str, now: float, v: dict) -> None:
    db.execute(
        "INSERT INTO versions (entry_id, number, author, created, title, abstract, manifest,"
        " pinning, claims) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry_id, number, author, now, v["title"], v["abstract"], json.dumps(v["manifest"]),
         json.dumps(v["pinning"]), json.dumps(v["claims"])),
    )  # fmt: skip


def get_entry(path: Path, entry_id: int) -> EntryRow | None:
    with transaction(path) as db:
        row = db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
    return _entry(row) if row else None


def all_entries(path: Path) -> list[EntryRow]:
    """Every entry, the most recently updated first (the caller filters what a viewer sees)."""
    with transaction(path) as db:
        rows = db.execute("SELECT * FROM entries ORDER BY updated DESC, id DESC").fetchall()
    return [_entry(row) for row in rows]


def set_visibility(path: Path, entry_id: int, visibility: str) -> None:
    with transaction(path) as db:
        db.execute("UPDATE entries SET visibility = ? WHERE id = ?", (visibility, entry_id))


def get_version(path: Path, entry_id: int, number: int) -> dict[str, Any] | None:
    with transaction(path) as db:
        row = db.execute(
            "SELECT * FROM versions WHERE entry_id = ? AND number = ?", (entry_id, number)
        ).fetchone()
    return _version(row) if row else None


def versions(path: Path, entry_id: int) -> list[dict[str, Any]]:
    with transaction(path) as db:
        rows = db.execute(
            "SELECT * FROM versions WHERE entry_id = ? ORDER BY number", (entry_id,)
        ).fetchall()
    return [_version(row) for row in rows]


def create_link(
    path: Path, entry_id: int, secret: str, created_by: str, expires: float, anonymous: bool
) -> int:
    with transaction(path) as db:
        cursor = db.execute(
            "INSERT INTO links (entry_id, secret_sha256, created_by, created, expires, anonymous)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (entry_id, secret_hash(secret), created_by, time.time(), expires, int(anonymous)),
        )
    return cursor.lastrowid


def link_of_row(row: sqlite3.Row) -> ReviewerLink:
    return ReviewerLink(
        row["id"], row["entry_id"], row["expires"], row["revoked"], bool(row["anonymous"])
    )


def link_by_secret(path: Path, secret: str) -> ReviewerLink | None:
    with transaction(path) as db:
        row = db.execute(
            "SELECT * FROM links WHERE secret_sha256 = ?", (secret_hash(secret),)
        ).fetchone()
    return link_of_row(row) if row else None


def link_by_id(path: Path, link_id: int) -> ReviewerLink | None:
    with transaction(path) as db:
        row = db.execute("SELECT * FROM links WHERE id = ?", (link_id,)).fetchone()
    return link_of_row(row) if row else None


def links(path: Path, entry_id: int) -> list[dict[str, Any]]:
    """An entry's links as its author sees them (never a secret: only its hash is kept)."""
    with transaction(path) as db:
        rows = db.execute("SELECT * FROM links WHERE entry_id = ? ORDER BY id", (entry_id,))
        return [
            {"id": r["id"], "created_by": r["created_by"], "created": r["created"],
             "expires": r["expires"], "anonymous": bool(r["anonymous"]), "revoked": r["revoked"]}
            for r in rows.fetchall()
        ]  # fmt: skip


def revoke_link(path: Path, entry_id: int, link_id: int) -> bool:
    with transaction(path) as db:
        cursor = db.execute(
            "UPDATE links SET revoked = ? WHERE id = ? AND entry_id = ? AND revoked IS NULL",
            (time.time(), link_id, entry_id),
        )
    return cursor.rowcount == 1
