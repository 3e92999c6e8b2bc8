"""The admin usage report over a site's month: 1,000 users × 30 days of usage records.

A store like a busy site's is written first (``--users`` users, ``--days`` days, 0–3
servers a user a day, a tenth of them Dask clusters, GPU servers, 20 groups, servers still
running today), then each way of getting the report is timed ``--repeat`` times:

- KioskHub's report as the page and API compute it (``usage_slices`` + the four tables),
  then through a running hub: ``GET /hub/api/usage`` (JSON per user, CSV per group) and
  the page ``/hub/usage`` with its tables and charts;
- what an admin would otherwise do: ``kioskhub usage --format csv`` and a pandas
  ``groupby`` on it, or one SQL ``GROUP BY`` on the store (neither splits servers at the
  period's or a month's edge, so both count hours that fall outside).

Target: the report in under 1 s.

    .venv/bin/python -m benchmarks.usage_report --users 1000 --days 30
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kioskhub.hub.schema.accounting import usage_database
from kioskhub.hub.usage_report import BY, Period, total_row, usage_rows
from kioskhub.hub.usage_slices import usage_slices
from kioskhub.spawner import usage_store

from . import report
from .hub_client import admin_client
from .hubs import ADMIN, ADMIN_PASSWORD, start_kioskhub
from .stats import summarize, verdict

NAME = "usage_report"
TARGET_S = 1.0
GROUPS = [f"group-{n:02d}" for n in range(20)]
PROFILES = (("small", 1.0, 0), ("medium", 4.0, 0), ("gpu", 8.0, 1), ("gpu-large", 16.0, 2))
PLAIN_SQL = (
    'SELECT username, COUNT(*), SUM(COALESCE("end", last_seen) - start), '
    'SUM((COALESCE("end", last_seen) - start) * cpu_cores), SUM(cpu_seconds), '
    'SUM((COALESCE("end", last_seen) - start) * gpu_count), MAX(memory_peak) '
    'FROM usage WHERE COALESCE("end", last_seen) >= ? AND start < ? GROUP BY username'
)


def synthetic_records(users: int, days: int, now: float, seed: int = 15):
    """A busy site's records over the ``days`` before ``now``."""
    rng = random.Random(seed)
    first = now - days * 86400
    for user in range(users):
        name = f"user-{user:04d}"
        groups = ",".join(sorted(rng.sample(GROUPS, rng.choice((1, 1, 2)))))
        for day in range(days + 1):
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                start = first + day * 86400 + rng.uniform(6, 20) * 3600
                if start >= now:
                    continue
                profile, cores, gpus = rng.choice(PROFILES)
                hours = rng.uniform(0.2, 10)
                end = start + hours * 3600
                still_running = end > now
                seen = now - rng.uniform(0, 60) if still_running else end
                yield usage_store.UsageRecord(
                    record_id=usage_store.new_record_id(),
                    username=name,
                    groups=groups,
                    server_name="",
                    backend="local",
                    profile=profile,
                    environment="default",
                    environment_ref="/opt/venvs/default",
                    cpu_cores=cores,
                    memory_requested=int(cores * 2**31),
                    gpu_count=gpus,
                    start=start,
                    last_seen=max(start, seen),
                    end=None if still_running else end,
                    cpu_seconds=(max(start, seen) - start) * cores * rng.uniform(0.05, 0.9),
                    memory_peak=int(cores * 2**31 * rng.uniform(0.1, 0.9)),
                    kind="dask" if rng.random() < 0.1 else "server",
                )


def write_store(path: Path, users: int, days: int, now: float) -> int:
    """Write the records in one transaction; returns how many."""
    rows = [
        tuple(getattr(r, c) for c in usage_store.COLUMNS)
        for r in synthetic_records(users, days, now)
    ]
    placeholders = ", ".join("?" for _ in usage_store.COLUMNS)
    with closing(usage_store.connect(path)) as db:
        db.execute("BEGIN")
        db.executemany(
            f"INSERT INTO usage ({usage_store.QUOTED_COLUMNS}) VALUES ({placeholders})", rows
        )
        db.execute("COMMIT")
    return len(rows)


def kioskhub_report(path: Path, period: Period) -> int:
    slices = usage_slices(path, period.months(), period.start, period.end, time.time())
    tables = {by: usage_rows(slices, by) for by in BY}
    total_row(slices)
    return sum(len(rows) for rows in tables.values())


def cli_and_pandas(config: Path, period: Period) -> int:
    import pandas

    listed = subprocess.run(
        [str(Path(sys.executable).parent / "kioskhub"), "usage", "--config", str(config),
         "--since", str(period.since), "--until", str(period.until), "--format", "csv"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    frame = pandas.read_csv(io.StringIO(listed))
    frame["core_seconds"] = frame["wall_seconds"] * frame["cpu_cores"]
    frame["gpu_seconds"] = frame["wall_seconds"] * frame["gpu_count"]
    sums = {"wall_seconds": "sum", "core_seconds": "sum", "cpu_seconds": "sum",
            "gpu_seconds": "sum", "memory_peak": "max", "record_id": "count"}  # fmt: skip
    rows = 0
    for column in ("username", "groups", "profile"):
        rows += len(frame.groupby(column).agg(sums))
    return rows


def plain_sql(path: Path, period: Period) -> int:
    with closing(sqlite3.connect(path)) as db:
        return len(db.execute(PLAIN_SQL, (period.start, period.end)).fetchall())


def timed(call, repeat: int) -> tuple[dict, int]:
    times, rows = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = call()
        times.append(time.perf_counter() - started)
    return summarize(times), rows


async def through_hub(url: str, period: Period, repeat: int) -> dict:
    client = await admin_client(url, ADMIN, ADMIN_PASSWORD)
    query = f"since={period.since}&until={period.until}"
    calls = {
        "GET /hub/api/usage?by=user (JSON)": ("api", f"/usage?{query}&by=user"),
        "GET /hub/api/usage?by=group&format=csv": ("api", f"/usage?{query}&by=group&format=csv"),
        "GET /hub/usage (page, 4 tables, 4 charts)": ("page", f"/hub/usage?{query}"),
    }
    found = {}
    try:
        for name, (kind, path) in calls.items():
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                if kind == "api":
                    status, _, _ = await client.api("GET", path)
                else:
                    async with client.session.get(url + path, headers=client._auth()) as reply:
                        status = reply.status
                        await reply.read()
                if status != 200:
                    raise RuntimeError(f"{path} answered {status}")
                times.append(time.perf_counter() - started)
            found[name] = summarize(times)
            report.progress(f"  {name}: p50 {found[name]['p50'] * 1000:.0f} ms")
    finally:
        await client.close()
    return found


def plot(rows: list[list], cond: dict) -> None:
    figure, axes = report.new_figure(1, width=9, height=4.5)
    names = [row[0] for row in rows]
    axes[0].barh(names, [row[1] for row in rows], color=["#f37726" if "KioskHub" in n else
                                                          "#888888" for n in names])  # fmt: skip
    axes[0].axvline(TARGET_S, color="red", linestyle="--", label=f"target {TARGET_S:.0f} s")
    axes[0].set_xlabel("p50 seconds")
    axes[0].invert_yaxis()
    axes[0].tick_params(axis="y", labelsize=7)
    axes[0].set_title(f"Usage report, {cond['parameters']['records']} records")
    axes[0].legend()
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


def run(args) -> dict:
    now = time.time()
    today = datetime.now(UTC).date()
    period = Period(today - timedelta(days=args.days), today + timedelta(days=1))
    hub = start_kioskhub("usage-report")
    try:
        path = usage_database(hub.folder / "state")
        started = time.perf_counter()
        count = write_store(path, args.users, args.days, now)
        report.progress(f"wrote {count} records in {time.perf_counter() - started:.1f} s")
        span = f"{period.since}..{period.until}"
        cond = report.conditions(users=args.users, days=args.days, records=count,
                                 repeat=args.repeat, period=span)  # fmt: skip
        print(report.conditions_line(cond), flush=True)
        measured = {}
        for name, call in (
            ("KioskHub report (SQL slices + 4 tables)", lambda: kioskhub_report(path, period)),
            ("plain SQL GROUP BY user (no splitting)", lambda: plain_sql(path, period)),
            ("kioskhub usage --format csv + pandas groupby",
             lambda: cli_and_pandas(hub.handle.config, period)),
        ):  # fmt: skip
            summary, out = timed(call, args.repeat)
            measured[name] = {"latency_s": summary, "rows": out}
            report.progress(f"  {name}: p50 {summary['p50'] * 1000:.0f} ms, {out} rows")
        for name, summary in asyncio.run(through_hub(hub.url, period, args.repeat)).items():
            measured[f"KioskHub {name}"] = {"latency_s": summary, "rows": None}
    finally:
        hub.stop()
        hub.remove()
    rows = [[name, data["latency_s"]["p50"], data["latency_s"]["p95"], data["latency_s"]["max"],
             data["rows"]] for name, data in measured.items()]  # fmt: skip
    print()
    print(report.conditions_line(cond))
    title = f"Admin usage report: {args.users} users × {args.days} days"
    report.print_table(["how", "p50 s", "p95 s", "max s", "rows"], rows, title=title)
    slowest = max(data["latency_s"]["p95"] for name, data in measured.items() if "KioskHub" in name)
    check = {"target": f"admin usage report over {args.users} users × {args.days} days < 1 s "
                       "(p95, page and API included)",
             "ratio": slowest / TARGET_S, "met": slowest < TARGET_S}  # fmt: skip
    print(f"target: {check['target']}: {verdict(check['met'])} ({slowest:.2f} s)")
    result = {"benchmark": NAME, "conditions": cond, "measured": measured, "targets": [check]}
    report.write_json(NAME, result)
    plot(rows, cond)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeat", type=int, default=5)
    return p


def main(argv: list[str] | None = None) -> int:
    run(parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
