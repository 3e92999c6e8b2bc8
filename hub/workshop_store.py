"""Workshop events, their participants and broadcast messages: a root-only SQLite file.

``<hub.state_dir>/workshops.sqlite`` (0600, never followed through a link). The hub's join
handler, the teachers' pages and API, and the expiry all go through these functions.
Blocking I/O: call them in a thread from the event loop. Times are Unix seconds.
"""

from __future__ import annotations

import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path

from kioskhub.hub.schema.workshops import PARTICIPANT_PREFIX
from kioskhub.spawner.usage_store import connect_root_only

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    teacher TEXT NOT NULL,
    environment TEXT NOT NULL,
    profile TEXT NOT NULL,
    materials_repo TEXT NOT NULL,
    materials_ref TEXT NOT NULL,
    seats INTEGER NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    grace_seconds REAL NOT NULL,
    code TEXT NOT NULL,
    created REAL NOT NULL,
    expired REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_code ON events (code) WHERE code != '';
CREATE TABLE IF NOT EXISTS participants (
    event_id TEXT NOT NULL,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    joined REAL NOT NULL,
    temporary INTEGER NOT NULL,
    PRIMARY KEY (event_id, username)
);
CREATE TABLE IF NOT EXISTS messages (
    event_id TEXT NOT NULL,
    sent REAL NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL
);
"""

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Join codes: no 0/O or 1/I/L to mistype."""
CODE_LENGTH = 10
EVENT_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


class SeatsTaken(Exception):
    """Every seat of the event is taken."""


@dataclass(frozen=True)
class Event:
    event_id: str
    title: str
    teacher: str
    environment: str
    profile: str
    materials_repo: str
    materials_ref: str
    seats: int
    start: float
    end: float
    grace_seconds: float
    code: str
    """The join code; empty once revoked."""
    created: float
    expired: float | None = None
    """When its clean-up was done; None before."""

    @property
    def group(self) -> str:
        """The JupyterHub group of its participants."""
        return f"workshop-{self.event_id}"

    @property
    def closes(self) -> float:
        """When its servers stop and temporary accounts go: the end plus the grace."""
        return self.end + self.grace_seconds


@dataclass(frozen=True)
class Participant:
    event_id: str
    username: str
    display_name: str
    joined: float
    temporary: bool
    """A temporary account (removed at expiry), not a lab account that joined."""


@dataclass(frozen=True)
class Message:
    event_id: str
    sent: float
    sender: str
    text: str


EVENT_COLUMNS = ", ".join(f'"{f.name}"' for f in fields(Event))


def database(state_dir: Path) -> Path:
    return state_dir / "workshops.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    return connect_root_only(path, SCHEMA)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normal_code(text: str) -> str:
    """A typed code as stored: upper case, without spaces or dashes."""
    return "".join(c for c in text.upper() if c not in " -")


def new_event_id() -> str:
    return "".join(secrets.choice(EVENT_ID_ALPHABET) for _ in range(6))


def participant_name(event_id: str, number: int) -> str:
    return f"{PARTICIPANT_PREFIX}{event_id}-{number:03d}"


def create_event(path: Path, event: Event) -> None:
    with closing(connect(path)) as db:
        placeholders = ", ".join("?" for _ in fields(Event))
        db.execute(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({placeholders})",
            tuple(getattr(event, f.name) for f in fields(Event)),
        )


def update_event(path: Path, event_id: str, **changes) -> Event | None:
    """Change the given columns of an event (title, seats, times, code, expired …)."""
    allowed = {f.name for f in fields(Event)} - {"event_id", "teacher", "created"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    if changes:
        assignments = ", ".join(f'"{name}" = ?' for name in changes)
        with closing(connect(path)) as db:
            db.execute(
                f"UPDATE events SET {assignments} WHERE event_id = ?",
                (*changes.values(), event_id),
            )
    return get_event(path, event_id)


def get_event(path: Path, event_id: str) -> Event | None:
    with closing(connect(path)) as db:
        row = db.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
    return Event(*row) if row else None


def event_by_code(path: Path, code: str) -> Event | None:
    code = normal_code(code)
    if not code:
        return None
    with closing(connect(path)) as db:
        row = db.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE code = ?", (code,)).fetchone()
    return Event(*row) if row else None


def events(path: Path, teacher: str | None = None) -> list[Event]:
    """Every event (or one teacher's), newest start first."""
    with closing(connect(path)) as db:
        rows = db.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE teacher = COALESCE(?, teacher) "
            "ORDER BY start DESC",
            (teacher,),
        ).fetchall()
    return [Event(*row) for row in rows]


def take_seat(
    path: Path, event_id: str, display_name: str, now: float, username: str = ""
) -> Participant:
    """Give a seat to a new temporary participant (``username`` empty: the next
    ``ws-<event>-<nnn>``, numbered among temporary participants only, so the first ones
    get the seats pre-warmed ahead) or to a lab account ``username``; SeatsTaken when none
    is left. One transaction, so two participants joining at once cannot take the last
    seat both."""
    with closing(connect(path)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            seats = db.execute(
                "SELECT seats FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
            if seats is None:
                raise KeyError(event_id)
            if username:
                row = db.execute(
                    "SELECT event_id, username, display_name, joined, temporary "
                    "FROM participants WHERE event_id = ? AND username = ?",
                    (event_id, username),
                ).fetchone()
                if row:
                    db.execute("ROLLBACK")
                    return Participant(*row[:4], bool(row[4]))
            taken, temporary = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(temporary), 0) FROM participants WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            if taken >= seats[0]:
                raise SeatsTaken(event_id)
            participant = Participant(
                event_id,
                username or participant_name(event_id, temporary + 1),
                display_name,
                now,
                temporary=not username,
            )
            db.execute(
                "INSERT INTO participants VALUES (?, ?, ?, ?, ?)",
                (*(getattr(participant, f.name) for f in fields(Participant)),),
            )
            db.execute("COMMIT")
            return participant
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def participants(path: Path, event_id: str) -> list[Participant]:
    with closing(connect(path)) as db:
        rows = db.execute(
            "SELECT event_id, username, display_name, joined, temporary FROM participants "
            "WHERE event_id = ? ORDER BY joined, username",
            (event_id,),
        ).fetchall()
    return [Participant(*row[:4], bool(row[4])) for row in rows]


def events_of_participant(path: Path, username: str) -> list[Event]:
    with closing(connect(path)) as db:
        rows = db.execute(
            f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS.split(', '))} FROM events e "
            "JOIN participants p ON p.event_id = e.event_id WHERE p.username = ?",
            (username,),
        ).fetchall()
    return [Event(*row) for row in rows]


def post_message(path: Path, message: Message) -> None:
    with closing(connect(path)) as db:
        db.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?)",
            (message.event_id, message.sent, message.sender, message.text),
        )


def messages(path: Path, event_id: str, since: float = 0.0) -> list[Message]:
    with closing(connect(path)) as db:
        rows = db.execute(
            "SELECT event_id, sent, sender, text FROM messages "
            "WHERE event_id = ? AND sent > ? ORDER BY sent",
            (event_id, since),
        ).fetchall()
    return [Message(*row) for row in rows]


def temporary_seats_taken(path: Path, event_id: str) -> int:
    """How many temporary participants joined ``event_id``: seats 1 … that number are theirs."""
    with closing(connect(path)) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM participants WHERE event_id = ? AND temporary = 1", (event_id,)
        ).fetchone()
    return row[0]
