"""Review threads in the gallery's database: threads anchored to a cell of a version,
their comments, and the reviewer number each link of an entry gets when it first writes.

The tables live in ``gallery.sqlite`` beside the entries (``create_tables``, run when the
service starts, as ``store.open_database`` does for its own). Every function blocks: the
service calls them in a thread (``GalleryState.call``).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .store import transaction
from .threads_access import Writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id INTEGER NOT NULL REFERENCES entries(id),
    version INTEGER NOT NULL,
    cell_id TEXT NOT NULL,
    quote TEXT NOT NULL,
    opened_by_user TEXT,
    opened_by_link INTEGER REFERENCES links(id),
    created REAL NOT NULL,
    resolved_by_user TEXT,
    resolved_by_link INTEGER REFERENCES links(id),
    resolved REAL,
    FOREIGN KEY (entry_id, version) REFERENCES versions(entry_id, number)
);
CREATE INDEX IF NOT EXISTS threads_of_version ON threads (entry_id, version);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id INTEGER NOT NULL REFERENCES threads(id),
    author_user TEXT,
    author_link INTEGER REFERENCES links(id),
    text TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_of_thread ON comments (thread_id);
CREATE TABLE IF NOT EXISTS reviewer_numbers (
    entry_id INTEGER NOT NULL REFERENCES entries(id),
    link_id INTEGER NOT NULL REFERENCES links(id),
    number INTEGER NOT NULL,
    PRIMARY KEY (entry_id, link_id),
    UNIQUE (entry_id, number)
);
"""


@dataclass(frozen=True)
class CommentRow:
    comment_id: int
    author: Writer
    text: str
    created: float


@dataclass(frozen=True)
class ThreadRow:
    thread_id: int
    entry_id: int
    version: int
    cell_id: str
    quote: str
    opened_by: Writer
    created: float
    resolved_by: Writer | None
    resolved: float | None
    comments: tuple[CommentRow, ...] = ()


def create_tables(path: Path) -> None:
    with transaction(path) as db:
        db.executescript(SCHEMA)


def _number_link(db: sqlite3.Connection, entry_id: int, writer: Writer) -> None:
    """Give ``writer``'s link its reviewer number for the entry, the next free one, once."""
    if writer.link_id is None:
        return
    db.execute(
        "INSERT OR IGNORE INTO reviewer_numbers (entry_id, link_id, number)"
        " SELECT ?, ?, COALESCE(MAX(number), 0) + 1 FROM reviewer_numbers WHERE entry_id = ?",
        (entry_id, writer.link_id, entry_id),
    )


def open_thread(
    path: Path, entry_id: int, version: int, cell_id: str, quote: str, writer: Writer, text: str
) -> int:
    """A thread on a cell of a version with its first comment; returns the thread's id."""
    now = time.time()
    with transaction(path) as db:
        _number_link(db, entry_id, writer)
        cursor = db.execute(
            "INSERT INTO threads (entry_id, version, cell_id, quote, opened_by_user,"
            " opened_by_link, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry_id, version, cell_id, quote, writer.user, writer.link_id, now),
        )
        thread_id = cursor.lastrowid
        _insert_comment(db, thread_id, writer, text, now)
    return thread_id


def _insert_comment(db, thread_id: int, writer: Writer, text: str, now: float) -> int:
    cursor = db.execute(
        "INSERT INTO comments (thread_id, author_user, author_link, text, created)"
        " VALUES (?, ?, ?, ?, ?)",
        (thread_id, writer.user, writer.link_id, text, now),
    )
    return cursor.lastrowid


def add_comment(path: Path, entry_id: int, thread_id: int, writer: Writer, text: str) -> int:
    with transaction(path) as db:
        _number_link(db, entry_id, writer)
        return _insert_comment(db, thread_id, writer, text, time.time())


def set_resolved(path: Path, thread_id: int, writer: Writer | None) -> None:
    """Resolve the thread as ``writer``, or reopen it (``None``)."""
    now = None if writer is None else time.time()
    user = None if writer is None else writer.user
    link = None if writer is None else writer.link_id
    with transaction(path) as db:
        db.execute(
            "UPDATE threads SET resolved_by_user = ?, resolved_by_link = ?, resolved = ?"
            " WHERE id = ?",
            (user, link, now, thread_id),
        )


def _numbers(db, entry_id: int) -> dict[int, int]:
    rows = db.execute(
        "SELECT link_id, number FROM reviewer_numbers WHERE entry_id = ?", (entry_id,)
    )
    return {row["link_id"]: row["number"] for row in rows.fetchall()}


def _writer(user: str | None, link: int | None, numbers: dict[int, int]) -> Writer:
    return Writer(user=user, link_id=link, pseudonym=numbers.get(link) if link else None)


def threads(path: Path, entry_id: int, versions: tuple[int, int]) -> list[ThreadRow]:
    """The entry's threads on versions ``versions[0]`` to ``versions[1]``, with their
    comments: by version, then in the order they were opened."""
    with transaction(path) as db:
        rows = db.execute(
            "SELECT * FROM threads WHERE entry_id = ? AND version BETWEEN ? AND ?"
            " ORDER BY version, id",
            (entry_id, *versions),
        ).fetchall()
        comments = db.execute(
            "SELECT c.* FROM comments c JOIN threads t ON c.thread_id = t.id"
            " WHERE t.entry_id = ? AND t.version BETWEEN ? AND ? ORDER BY c.id",
            (entry_id, *versions),
        ).fetchall()
        numbers = _numbers(db, entry_id)
    by_thread: dict[int, list[CommentRow]] = {}
    for c in comments:
        by_thread.setdefault(c["thread_id"], []).append(
            CommentRow(c["id"], _writer(c["author_user"], c["author_link"], numbers),
                       c["text"], c["created"])
        )  # fmt: skip
    return [_thread(row, numbers, by_thread.get(row["id"], [])) for row in rows]


def get_thread(path: Path, entry_id: int, version: int, thread_id: int) -> ThreadRow | None:
    """Thread ``thread_id`` when it is on that version of that entry."""
    with transaction(path) as db:
        row = db.execute(
            "SELECT * FROM threads WHERE id = ? AND entry_id = ? AND version = ?",
            (thread_id, entry_id, version),
        ).fetchone()
        numbers = _numbers(db, entry_id)
    return _thread(row, numbers, []) if row else None


def _thread(row: sqlite3.Row, numbers: dict[int, int], comments: list[CommentRow]) -> ThreadRow:
    resolved_by = None
    if row["resolved"] is not None:
        resolved_by = _writer(row["resolved_by_user"], row["resolved_by_link"], numbers)
    return ThreadRow(
        row["id"], row["entry_id"], row["version"], row["cell_id"], row["quote"],
        _writer(row["opened_by_user"], row["opened_by_link"], numbers), row["created"],
        resolved_by, row["resolved"], tuple(comments),
    )  # fmt: skip
