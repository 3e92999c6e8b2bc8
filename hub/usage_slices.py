"""The usage records of a period cut into month slices, summed in SQLite.

Reports over a site's month (1,000 users, 100,000 records) must answer in well under a
second, so the cutting and summing run in one SQL query, not per record in Python: each
record is joined with the months of the period it overlaps, its wall time clipped to the
month and the period, and the parts summed per (month, user, groups, profile, kind). What
comes back is small (one row per user and profile per month); ``usage_report`` turns it
into the report's tables. Blocking I/O: call it in a thread from the event loop.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from kioskhub.spawner import usage_store

# An open record runs to ``:now``; its CPU seconds were measured up to ``last_seen`` and
# are spread evenly over [start, last_seen] (the cgroup counts one sum). A record counts as
# a run in the month where its part in the period begins.
SLICE_QUERY = """
WITH months(month, lo, hi) AS (VALUES {months}),
runs AS (
    SELECT username, groups, profile, kind, cpu_cores, gpu_count, memory_peak, cpu_seconds,
           start,
           COALESCE("end", MAX(last_seen, :now)) AS stop,
           COALESCE("end", last_seen) AS measured
    FROM usage
    WHERE COALESCE("end", MAX(last_seen, :now)) > :since AND start < :until
),
parts AS (
    SELECT month, username, groups, profile, kind, cpu_cores, gpu_count, memory_peak,
           MAX(0.0, MIN(stop, hi) - MAX(start, lo)) AS wall,
           CASE WHEN measured > start
                THEN cpu_seconds * MAX(0.0, MIN(measured, hi) - MAX(start, lo))
                     / (measured - start)
                WHEN start >= lo AND start < hi THEN cpu_seconds
                ELSE 0.0 END AS cpu_used,
           (start >= lo OR lo <= :since) AS first_part
    FROM runs JOIN months ON start < hi AND stop > lo
)
SELECT month, username, groups, profile, kind,
       SUM(first_part), SUM(wall), SUM(wall * cpu_cores), SUM(cpu_used),
       SUM(wall * gpu_count), MAX(memory_peak)
FROM parts
GROUP BY month, username, groups, profile, kind
ORDER BY month, username, profile, kind, groups
"""


@dataclass(frozen=True)
class UsageSlice:
    """What one user used in one month of a period with one profile and set of groups.

    ``groups`` as recorded (comma-separated); seconds, not hours.
    """

    month: str
    username: str
    groups: str
    profile: str
    kind: str
    runs: int
    wall_seconds: float
    core_seconds: float
    cpu_seconds: float
    gpu_seconds: float
    memory_peak: int


def usage_slices(
    path: Path, months: list[tuple[str, float, float]], since: float, until: float, now: float
) -> list[UsageSlice]:
    """The records of ``path`` in [since, until) cut by ``months`` ((name, start, end),
    already clipped to the period, as ``usage_report.Period.months`` gives) and summed."""
    if not path.exists() or not months:
        return []
    month_params = {}
    for index, (name, low, high) in enumerate(months):
        month_params[f"m{index}"] = name
        month_params[f"lo{index}"] = low
        month_params[f"hi{index}"] = high
    values = ", ".join(f"(:m{i}, :lo{i}, :hi{i})" for i in range(len(months)))
    with closing(usage_store.connect(path)) as db:
        rows = db.execute(
            SLICE_QUERY.format(months=values),
            {**month_params, "since": since, "until": until, "now": now},
        ).fetchall()
    return [UsageSlice(*row) for row in rows]
