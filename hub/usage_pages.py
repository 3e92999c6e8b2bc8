"""The admin usage report in the hub: the page ``/hub/usage`` and ``GET /hub/api/usage``.

Both are JupyterHub handlers (``JupyterHub.extra_handlers``), for holders of the
``admin:users`` scope alone (admins, and tokens given that scope); anyone else gets 403.
They read the usage records (root's SQLite file in the state folder) in a thread, so the
event loop never waits on the disk, and show nothing a user can change unescaped.

- ``/hub/usage?since=YYYY-MM-DD&until=YYYY-MM-DD``: tables per user, group, profile and
  month, and bar charts (inline SVG) of core- and GPU-hours per group and per month.
- ``/hub/api/usage?since=…&until=…&by=user|group|profile|month[&format=csv]``: one table as
  JSON (``{"since", "until", "by", "rows", "total"}``) or CSV.

``since`` is the first day, ``until`` the day after the last (UTC); the default is this
month. Servers still running count up to now.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import needs_scope
from markupsafe import Markup
from tornado import web

from kioskhub.hub.schema.accounting import usage_database

from .usage_plots import bar_chart_svg
from .usage_report import BY, Period, PeriodError, parse_period, rows_csv, total_row, usage_rows
from .usage_slices import UsageSlice, usage_slices

REPORT_SCOPE = "admin:users"
FORMATS = ("json", "csv")


class UsageReading:
    """What both handlers share: the store's path, the period asked for, the slices."""

    def initialize(self, state_dir: Path) -> None:
        self.usage_path = usage_database(state_dir)

    def requested_period(self) -> Period:
        today = datetime.now(UTC).date()
        try:
            return parse_period(
                self.get_argument("since", None), self.get_argument("until", None), today
            )
        except PeriodError as error:
            raise web.HTTPError(400, "%s", error) from None

    async def read_slices(self, period: Period) -> list[UsageSlice]:
        return await asyncio.to_thread(
            usage_slices, self.usage_path, period.months(), period.start, period.end, time.time()
        )


class UsagePageHandler(UsageReading, BaseHandler):
    """The report page: a period form, the charts, the four tables and CSV links."""

    @web.authenticated
    @needs_scope(REPORT_SCOPE)
    async def get(self) -> None:
        period = self.requested_period()
        slices = await self.read_slices(period)
        tables = {by: usage_rows(slices, by) for by in BY}
        html = await self.render_template(
            "usage.html",
            period=period,
            tables=tables,
            total=total_row(slices),
            charts=usage_charts(tables),
        )
        self.finish(html)


def usage_charts(tables: dict[str, list]) -> list[Markup]:
    """Core- and GPU-hours per group (largest first) and per month (in order)."""
    charts = []
    for by, order in (("group", True), ("month", False)):
        for unit, field in (("core-hours", "core_hours"), ("GPU-hours", "gpu_hours")):
            bars = [(row.key, getattr(row, field)) for row in tables[by]]
            if order:
                bars.sort(key=lambda bar: -bar[1])
            chart_id = f"kh-chart-{field.replace('_', '-')}-by-{by}"
            # The chart escapes every label itself (usage_plots).
            charts.append(Markup(bar_chart_svg(f"{unit} per {by}", unit, bars, chart_id)))
    return charts


class UsageAPIHandler(UsageReading, APIHandler):
    """One table of the report as JSON or CSV."""

    @needs_scope(REPORT_SCOPE)
    async def get(self) -> None:
        by = self.get_argument("by", "user")
        if by not in BY:
            raise web.HTTPError(400, "by=%r: choose one of %s", by, ", ".join(BY))
        output = self.get_argument("format", "json")
        if output not in FORMATS:
            raise web.HTTPError(400, "format=%r: choose json or csv", output)
        period = self.requested_period()
        slices = await self.read_slices(period)
        rows = usage_rows(slices, by)
        if output == "csv":
            name = f"usage-by-{by}-{period.since}-{period.until}.csv"
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            self.finish(rows_csv(rows, by))
            return
        self.finish(
            json.dumps(
                {
                    "since": str(period.since),
                    "until": str(period.until),
                    "by": by,
                    "rows": [row.as_dict() for row in rows],
                    "total": total_row(slices).as_dict(),
                }
            )
        )


def usage_hub_settings(state_dir: Path) -> dict[str, Any]:
    """The routes of the report, under the hub's prefix."""
    options = {"state_dir": state_dir}
    return {
        "JupyterHub": {
            "extra_handlers": [
                (r"/usage", UsagePageHandler, options),
                (r"/api/usage", UsageAPIHandler, options),
            ]
        }
    }
