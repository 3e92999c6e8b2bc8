"""The admin usage report: a period's usage per user, group, profile and month (pure).

``Period`` is the report's window in whole UTC days, parsed from the page's or the API's
``since``/``until`` (``until`` is the day after the last, as for ``kioskhub usage``).
``usage_rows`` sums month slices (``usage_slices``) into one table: a server with several
groups counts fully in each of them, so the group table does not add up to the total.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from .usage_cli import spreadsheet_safe
from .usage_slices import UsageSlice

BY = ("user", "group", "profile", "month")
MAX_MONTHS = 120
HOUR = 3600.0


class PeriodError(ValueError):
    """A ``since``/``until`` that is not a period; the message names the parameter."""


@dataclass(frozen=True)
class Period:
    """[since, until) in whole UTC days."""

    since: date
    until: date

    @property
    def start(self) -> float:
        return _midnight(self.since)

    @property
    def end(self) -> float:
        return _midnight(self.until)

    def months(self) -> list[tuple[str, float, float]]:
        """(YYYY-MM, start, end) of each month in the period, clipped to it."""
        found = []
        year, month = self.since.year, self.since.month
        while date(year, month, 1) < self.until:
            following = (year + 1, 1) if month == 12 else (year, month + 1)
            low = max(self.start, _midnight(date(year, month, 1)))
            high = min(self.end, _midnight(date(*following, 1)))
            found.append((f"{year:04d}-{month:02d}", low, high))
            year, month = following
        return found


def _midnight(day: date) -> float:
    return datetime.combine(day, datetime.min.time(), UTC).timestamp()


def parse_period(since: str | None, until: str | None, today: date) -> Period:
    """The period named by ``since`` and ``until`` (YYYY-MM-DD); by default ``today``'s month."""
    first = _day("since", since) if since else today.replace(day=1)
    if until:
        last = _day("until", until)
    else:
        last = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    if last <= first:
        raise PeriodError(f"until ({last}) must be after since ({first})")
    if (last.year - first.year) * 12 + last.month - first.month > MAX_MONTHS:
        raise PeriodError(f"the period from since to until may span at most {MAX_MONTHS} months")
    return Period(first, last)


def _day(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{name}={text!r} is not a day: write {name}=YYYY-MM-DD") from None


@dataclass
class UsageRow:
    """One line of a report table: what was used under ``key`` (a user, group, profile or
    month). Servers and Dask clusters count in the month where their part begins."""

    key: str
    users: set[str] = field(default_factory=set)
    servers: int = 0
    dask_clusters: int = 0
    wall_hours: float = 0.0
    core_hours: float = 0.0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    memory_peak: int = 0

    def add(self, part: UsageSlice) -> None:
        self.users.add(part.username)
        if part.kind == "dask":
            self.dask_clusters += part.runs
        else:
            self.servers += part.runs
        self.wall_hours += part.wall_seconds / HOUR
        self.core_hours += part.core_seconds / HOUR
        self.cpu_hours += part.cpu_seconds / HOUR
        self.gpu_hours += part.gpu_seconds / HOUR
        self.memory_peak = max(self.memory_peak, part.memory_peak)

    def as_dict(self) -> dict:
        values = asdict(self)
        values["users"] = len(self.users)
        for name in ("wall_hours", "core_hours", "cpu_hours", "gpu_hours"):
            values[name] = round(values[name], 3)
        return values


COLUMNS = tuple(UsageRow.__dataclass_fields__)


def _keys(part: UsageSlice, by: str) -> list[str]:
    if by == "user":
        return [part.username]
    if by == "profile":
        return [part.profile]
    if by == "month":
        return [part.month]
    return part.groups.split(",") if part.groups else [""]


def usage_rows(slices: list[UsageSlice], by: str) -> list[UsageRow]:
    """The table of ``slices`` by ``by`` (one of ``BY``), in the order of its keys."""
    if by not in BY:
        raise ValueError(f"by={by!r}: choose one of {', '.join(BY)}")
    rows: dict[str, UsageRow] = defaultdict(lambda: UsageRow(""))
    for part in slices:
        for key in _keys(part, by):
            row = rows[key]
            row.key = key
            row.add(part)
    return [rows[key] for key in sorted(rows)]


def total_row(slices: list[UsageSlice]) -> UsageRow:
    total = UsageRow("total")
    for part in slices:
        total.add(part)
    return total


def rows_csv(rows: list[UsageRow], by: str) -> str:
    """The table as CSV, its first column named after ``by``; text a user chose is defused."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((by, *COLUMNS[1:]))
    for row in rows:
        values = row.as_dict()
        writer.writerow([spreadsheet_safe(values[name]) for name in COLUMNS])
    return out.getvalue()
