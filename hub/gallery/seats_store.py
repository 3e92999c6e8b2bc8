"""Seat tickets and seats in the gallery's database (``gallery.sqlite``).

The gallery service mints tickets (``mint_ticket``); the hub's seat page reads one
(``ticket_for_page``) and redeems it (``redeem``) in one write transaction, so a ticket
makes at most one seat and the caps hold when two reviewers press at once. A ticket is
stored only as its sha256. The gallery's expiry (``seats_expiry``) lists the seats past
their end (``due_seats``) and marks each removed once the hub removed it. Every function
blocks: call it in a thread.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from kioskhub.hub.schema.gallery import ReviewerSeats

from .access import LinkUnusable, check_link
from .seats import TICKET_SECONDS, SeatRefused, cap_refusal, seat_expiry, seat_name
from .store import connect, link_of_row, secret_hash, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS seat_tickets (
    ticket_sha256 TEXT PRIMARY KEY,
    link_id INTEGER NOT NULL REFERENCES links(id),
    entry_id INTEGER NOT NULL REFERENCES entries(id),
    number INTEGER NOT NULL,
    environment TEXT NOT NULL,
    profile TEXT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    used REAL
);
CREATE TABLE IF NOT EXISTS seats (
    username TEXT PRIMARY KEY,
    link_id INTEGER NOT NULL REFERENCES links(id),
    entry_id INTEGER NOT NULL REFERENCES entries(id),
    number INTEGER NOT NULL,
    environment TEXT NOT NULL,
    profile TEXT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    removed REAL
);
"""


@dataclass(frozen=True)
class Ticket:
    link_id: int
    entry_id: int
    number: int
    environment: str
    profile: str | None
    expires: float
    title: str = ""


@dataclass(frozen=True)
class Seat:
    username: str
    link_id: int
    entry_id: int
    number: int
    environment: str
    profile: str | None
    expires: float
    anonymous: bool = False


def create_tables(path: Path) -> None:
    with transaction(path) as db:
        db.executescript(SCHEMA)


def seats_in_use(path: Path, link_id: int) -> tuple[int, int]:
    """Seats not yet removed: of the link, of the site."""
    with transaction(path) as db:
        return _in_use(db, link_id)


def _in_use(db: sqlite3.Connection, link_id: int) -> tuple[int, int]:
    of_link = db.execute(
        "SELECT COUNT(*) FROM seats WHERE removed IS NULL AND link_id = ?", (link_id,)
    ).fetchone()[0]
    of_site = db.execute("SELECT COUNT(*) FROM seats WHERE removed IS NULL").fetchone()[0]
    return of_link, of_site


def mint_ticket(
    path: Path, link_id: int, entry_id: int, number: int, environment: str,
    profile: str | None, now: float,
) -> str:  # fmt: skip
    """A new ticket's secret (only its hash is kept)."""
    secret = secrets.token_urlsafe(32)
    with transaction(path) as db:
        db.execute(
            "INSERT INTO seat_tickets (ticket_sha256, link_id, entry_id, number, environment,"
            " profile, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (secret_hash(secret), link_id, entry_id, number, environment, profile, now,
             now + TICKET_SECONDS),
        )  # fmt: skip
    return secret


def _usable_ticket(db: sqlite3.Connection, secret: str, now: float) -> tuple[sqlite3.Row, object]:
    """The ticket's row and its link, or SeatRefused saying why it cannot be used."""
    row = db.execute(
        "SELECT t.*, e.title FROM seat_tickets t JOIN entries e ON e.id = t.entry_id"
        " WHERE t.ticket_sha256 = ?",
        (secret_hash(secret),),
    ).fetchone()
    if row is None:
        raise SeatRefused(
            "This seat ticket is not one the gallery gave: open the reviewer link again and "
            "press \u201cOpen in a temporary seat\u201d.",
            404,
        )
    if row["used"] is not None:
        raise SeatRefused(
            "This seat ticket was used already (each opens one seat): open the reviewer link "
            "again for a new one.",
            410,
        )
    if now >= row["expires"]:
        raise SeatRefused(
            f"This seat ticket has expired (they last {TICKET_SECONDS // 60} minutes): open "
            "the reviewer link again for a new one.",
            410,
        )
    link_row = db.execute("SELECT * FROM links WHERE id = ?", (row["link_id"],)).fetchone()
    if link_row is None:
        raise SeatRefused("The reviewer link of this ticket is gone.", 410)
    link = link_of_row(link_row)
    try:
        check_link(link, row["entry_id"], now)
    except LinkUnusable as error:
        raise SeatRefused(str(error), 410) from None
    except LookupError:
        raise SeatRefused("This seat ticket is for another reviewer link's entry.", 403) from None
    return row, link


def ticket_for_page(path: Path, secret: str, now: float) -> Ticket:
    """What a usable ticket opens (not used up), for the hub's seat page; SeatRefused."""
    with transaction(path) as db:
        row, _ = _usable_ticket(db, secret, now)
    return Ticket(
        row["link_id"], row["entry_id"], row["number"], row["environment"], row["profile"],
        row["expires"], row["title"],
    )  # fmt: skip


def redeem(path: Path, secret: str, now: float, settings: ReviewerSeats) -> Seat:
    """Use the ticket up and make its seat, within the caps; SeatRefused otherwise (the
    ticket is then left as it was, except when it was already unusable)."""
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        row, link = _usable_ticket(db, secret, now)
        problem = cap_refusal(settings, *_in_use(db, row["link_id"]))
        if problem:
            raise SeatRefused(problem, 429)
        seat = Seat(
            seat_name(secrets.token_hex(5)), row["link_id"], row["entry_id"], row["number"],
            row["environment"], row["profile"], seat_expiry(now, settings.hours, link.expires),
            link.anonymous,
        )  # fmt: skip
        db.execute(
            "UPDATE seat_tickets SET used = ? WHERE ticket_sha256 = ?", (now, secret_hash(secret))
        )
        db.execute(
            "INSERT INTO seats (username, link_id, entry_id, number, environment, profile,"
            " created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seat.username, seat.link_id, seat.entry_id, seat.number, seat.environment,
             seat.profile, now, seat.expires),
        )  # fmt: skip
        db.commit()
        return seat
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


def _seat(row: sqlite3.Row) -> Seat:
    return Seat(
        row["username"], row["link_id"], row["entry_id"], row["number"], row["environment"],
        row["profile"], row["expires"], bool(row["anonymous"]),
    )  # fmt: skip


SEAT_WITH_LINK = "SELECT s.*, l.anonymous FROM seats s JOIN links l ON l.id = s.link_id"


def live_seat(path: Path, username: str, now: float | None = None) -> Seat | None:
    """The seat ``username`` while it lasts (not removed, not past its end), else None."""
    now = time.time() if now is None else now
    with transaction(path) as db:
        row = db.execute(
            f"{SEAT_WITH_LINK} WHERE s.username = ? AND s.removed IS NULL AND s.expires > ?",
            (username, now),
        ).fetchone()
    return _seat(row) if row else None


def is_due(path: Path, username: str, now: float) -> bool:
    """Whether ``username`` is a seat past its end and not yet removed."""
    with transaction(path) as db:
        row = db.execute(
            "SELECT 1 FROM seats WHERE username = ? AND removed IS NULL AND expires <= ?",
            (username, now),
        ).fetchone()
    return row is not None


def due_seats(path: Path, now: float) -> list[str]:
    """The usernames of the seats past their end, not yet removed."""
    with transaction(path) as db:
        rows = db.execute(
            "SELECT username FROM seats WHERE removed IS NULL AND expires <= ? ORDER BY expires",
            (now,),
        ).fetchall()
    return [row["username"] for row in rows]


def mark_removed(path: Path, username: str, now: float) -> None:
    with transaction(path) as db:
        db.execute("UPDATE seats SET removed = ? WHERE username = ?", (now, username))
