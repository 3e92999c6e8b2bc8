"""Re-execution reports in the gallery's database: one row per version, its latest run.

``state`` is ``queued``, ``running`` or ``done``; a done row holds the badge and the report
(JSON: per-cell results). Every function blocks: call them in a thread.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .store import transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS reexecutions (
    entry_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    requested REAL NOT NULL,
    tolerance TEXT,
    started REAL,
    finished REAL,
    badge TEXT,
    report TEXT,
    PRIMARY KEY (entry_id, number),
    FOREIGN KEY (entry_id, number) REFERENCES versions(entry_id, number)
);
"""
UNDER_WAY = ("queued", "running")


class AlreadyUnderWay(ValueError):
    """The version is already queued or running."""

    status = 409


def create_table(path: Path) -> None:
    """Create the table, and queue again what a stopped service left running."""
    with transaction(path) as db:
        db.executescript(SCHEMA)
        db.execute(
            "UPDATE reexecutions SET state = 'queued', started = NULL WHERE state = 'running'"
        )


def request(path: Path, entry_id: int, number: int, tolerance: dict | None) -> dict[str, Any]:
    """Queue a re-execution of the version; AlreadyUnderWay while one is queued or running."""
    with transaction(path) as db:
        row = db.execute(
            "SELECT state FROM reexecutions WHERE entry_id = ? AND number = ?", (entry_id, number)
        ).fetchone()
        if row and row["state"] in UNDER_WAY:
            raise AlreadyUnderWay(f"version {number} is already {row['state']} for re-execution")
        db.execute(
            "INSERT OR REPLACE INTO reexecutions (entry_id, number, state, requested, tolerance)"
            " VALUES (?, ?, 'queued', ?, ?)",
            (entry_id, number, time.time(), json.dumps(tolerance) if tolerance else None),
        )
    return get(path, entry_id, number)


def next_queued(path: Path) -> dict[str, Any] | None:
    """The oldest queued run, now marked running; None when none waits."""
    with transaction(path) as db:
        row = db.execute(
            "SELECT * FROM reexecutions WHERE state = 'queued' ORDER BY requested LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        db.execute(
            "UPDATE reexecutions SET state = 'running', started = ? "
            "WHERE entry_id = ? AND number = ?",
            (time.time(), row["entry_id"], row["number"]),
        )
    return get(path, row["entry_id"], row["number"])


def finish(path: Path, entry_id: int, number: int, report: dict[str, Any]) -> None:
    with transaction(path) as db:
        db.execute(
            "UPDATE reexecutions SET state = 'done', finished = ?, badge = ?, report = ? "
            "WHERE entry_id = ? AND number = ?",
            (time.time(), report["badge"], json.dumps(report), entry_id, number),
        )


def get(path: Path, entry_id: int, number: int) -> dict[str, Any] | None:
    with transaction(path) as db:
        row = db.execute(
            "SELECT * FROM reexecutions WHERE entry_id = ? AND number = ?", (entry_id, number)
        ).fetchone()
    if row is None:
        return None
    report = json.loads(row["report"]) if row["report"] else {}
    return {
        "entry_id": row["entry_id"],
        "number": row["number"],
        "state": row["state"],
        "requested": row["requested"],
        "started": row["started"],
        "finished": row["finished"],
        "tolerance": json.loads(row["tolerance"]) if row["tolerance"] else None,
        "badge": row["badge"],
        "problem": report.get("problem"),
        "environment": report.get("environment"),
        "cells": report.get("cells", []),
    }


def reexecution_model(run: dict[str, Any] | None) -> dict[str, Any]:
    """A version's re-execution as the API and the page show it (state ``none`` before any)."""
    if run is None:
        return {"state": "none", "badge": None, "cells": []}
    return {key: value for key, value in run.items() if key not in ("entry_id", "number")}


def badges(path: Path, versions: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """``(entry, number)`` → the badge (or the state while under way) of those with a run."""
    if not versions:
        return {}
    with transaction(path) as db:
        rows = db.execute(
            "SELECT entry_id, number, state, badge FROM reexecutions WHERE entry_id IN "
            f"({','.join('?' * len(versions))})",
            [entry for entry, _ in versions],
        ).fetchall()
    wanted = set(versions)
    return {
        (row["entry_id"], row["number"]): row["badge"] if row["state"] == "done" else row["state"]
        for row in rows
        if (row["entry_id"], row["number"]) in wanted
    }
