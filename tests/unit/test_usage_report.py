"""The admin usage report: month slices from the store, the tables, periods, CSV and charts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest

from kioskhub.hub.usage_plots import MAX_BARS, bar_chart_svg
from kioskhub.hub.usage_report import (
    Period,
    PeriodError,
    parse_period,
    rows_csv,
    total_row,
    usage_rows,
)
from kioskhub.hub.usage_slices import UsageSlice, usage_slices
from kioskhub.spawner import usage_store

HOUR = 3600.0
GIB = 2**30
HOSTILE = '<script>alert("x")</script>" onload="alert(1)'


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def stored(path, number: int, **values) -> None:
    """Write a record as the hub does: a 2-core, 1-GPU server by default."""
    defaults = dict(
        record_id=f"rec-{number}",
        username="ada",
        groups="optics,physics",
        server_name="",
        backend="local",
        profile="gpu",
        environment="default",
        environment_ref="/opt/venvs/default",
        cpu_cores=2.0,
        memory_requested=4 * GIB,
        gpu_count=1,
        last_seen=values.get("end") or values["start"],
        end=None,
        cpu_seconds=0.0,
        memory_peak=GIB,
    )
    usage_store.open_record(path, usage_store.UsageRecord(**{**defaults, **values}))


def slices_of(path, since: str, until: str, now: str) -> list[UsageSlice]:
    period = Period(date.fromisoformat(since), date.fromisoformat(until))
    return usage_slices(path, period.months(), period.start, period.end, at(now))


@pytest.fixture
def store(tmp_path):
    """ada: 4 h across the November/December boundary; bob: running since New Year's Eve
    20:00, last seen at 22:00 with 1 CPU hour; cy: a Dask cluster in November only."""
    path = tmp_path / "usage.sqlite"
    stored(
        path,
        1,
        start=at("2026-11-30T22:00:00"),
        end=at("2026-12-01T02:00:00"),
        cpu_seconds=4 * HOUR,
        memory_peak=2 * GIB,
    )
    stored(
        path,
        2,
        username="bob",
        groups="",
        profile="small",
        cpu_cores=1.0,
        gpu_count=0,
        start=at("2026-12-31T20:00:00"),
        last_seen=at("2026-12-31T22:00:00"),
        cpu_seconds=HOUR,
    )
    stored(
        path,
        3,
        username="cy",
        groups="physics",
        kind="dask",
        cpu_cores=4.0,
        gpu_count=0,
        start=at("2026-11-10T00:00:00"),
        end=at("2026-11-10T01:00:00"),
        cpu_seconds=HOUR,
    )
    return path


def test_a_record_counts_only_its_part_inside_the_period(store):
    found = slices_of(store, "2026-12-01", "2027-01-01", now="2027-01-01T02:00:00")
    assert found == [
        # 2 of ada's 4 hours fall in December; her CPU seconds are shared out the same way.
        UsageSlice("2026-12", "ada", "optics,physics", "gpu", "server", 1,
                   2 * HOUR, 4 * HOUR, 2 * HOUR, 2 * HOUR, 2 * GIB),
        # bob's open server runs to now, cut at the period's end; its CPU hour was
        # measured before his last-seen time, inside the period.
        UsageSlice("2026-12", "bob", "", "small", "server", 1,
                   4 * HOUR, 4 * HOUR, HOUR, 0.0, GIB),
    ]  # fmt: skip


def test_a_record_across_a_month_end_is_split_between_the_months_and_counted_once(store):
    found = slices_of(store, "2026-11-01", "2027-02-01", now="2027-01-01T02:00:00")
    assert [(s.month, s.username, s.runs, s.wall_seconds, s.cpu_seconds) for s in found] == [
        ("2026-11", "ada", 1, 2 * HOUR, 2 * HOUR),
        ("2026-11", "cy", 1, HOUR, HOUR),
        ("2026-12", "ada", 0, 2 * HOUR, 2 * HOUR),
        ("2026-12", "bob", 1, 4 * HOUR, HOUR),
        ("2027-01", "bob", 0, 2 * HOUR, 0.0),
    ]


def test_records_outside_the_period_and_an_empty_store_give_nothing(store, tmp_path):
    assert slices_of(store, "2027-03-01", "2027-04-01", now="2027-01-01T02:00:00") == []
    assert slices_of(tmp_path / "none.sqlite", "2026-11-01", "2027-01-01", "2027-01-01") == []


def test_the_tables_per_user_group_profile_and_month(store):
    found = slices_of(store, "2026-11-01", "2027-02-01", now="2027-01-01T02:00:00")
    by_user = {row.key: row.as_dict() for row in usage_rows(found, "user")}
    assert by_user["ada"] == {
        "key": "ada",
        "users": 1,
        "servers": 1,
        "dask_clusters": 0,
        "wall_hours": 4.0,
        "core_hours": 8.0,
        "cpu_hours": 4.0,
        "gpu_hours": 4.0,
        "memory_peak": 2 * GIB,
    }
    assert (by_user["cy"]["servers"], by_user["cy"]["dask_clusters"]) == (0, 1)
    groups = {
        row.key: (row.as_dict()["users"], row.core_hours) for row in usage_rows(found, "group")
    }
    assert groups == {"": (1, 6.0), "optics": (1, 8.0), "physics": (2, 12.0)}
    assert [row.key for row in usage_rows(found, "profile")] == ["gpu", "small"]
    months = {row.key: (row.servers, row.wall_hours) for row in usage_rows(found, "month")}
    assert months == {"2026-11": (1, 3.0), "2026-12": (1, 6.0), "2027-01": (0, 2.0)}
    total = total_row(found)
    assert (total.servers, total.dask_clusters, total.wall_hours, total.gpu_hours) == (2, 1, 11, 4)


def test_the_csv_names_its_table_and_defuses_formulas():
    part = UsageSlice("2026-12", "=cmd|' /C calc'!A0", "", "small", "server", 1,
                      HOUR, HOUR, 1800.0, 0.0, GIB)  # fmt: skip
    assert rows_csv(usage_rows([part], "user"), "user") == (
        "user,users,servers,dask_clusters,wall_hours,core_hours,cpu_hours,gpu_hours,memory_peak\n"
        "'=cmd|' /C calc'!A0,1,1,0,1.0,1.0,0.5,0.0,1073741824\n"
    )


def test_a_period_defaults_to_this_month_and_names_the_bad_parameter():
    assert parse_period(None, None, date(2026, 12, 15)) == Period(
        date(2026, 12, 1), date(2027, 1, 1)
    )
    assert Period(date(2026, 11, 15), date(2027, 1, 10)).months() == [
        ("2026-11", at("2026-11-15T00:00:00"), at("2026-12-01T00:00:00")),
        ("2026-12", at("2026-12-01T00:00:00"), at("2027-01-01T00:00:00")),
        ("2027-01", at("2027-01-01T00:00:00"), at("2027-01-10T00:00:00")),
    ]
    with pytest.raises(PeriodError, match=r"since='1/12/2026' is not a day: write since=YYYY"):
        parse_period("1/12/2026", None, date(2026, 12, 15))
    with pytest.raises(PeriodError, match=r"until='tomorrow' is not a day: write until=YYYY"):
        parse_period("2026-12-01", "tomorrow", date(2026, 12, 15))
    with pytest.raises(PeriodError, match=r"until \(2026-12-01\) must be after since"):
        parse_period("2026-12-01", "2026-12-01", date(2026, 12, 15))
    with pytest.raises(PeriodError, match="at most 120 months"):
        parse_period("1900-01-01", "2026-12-01", date(2026, 12, 15))


def test_a_chart_escapes_hostile_labels_in_text_and_attributes():
    svg = bar_chart_svg(f"core-hours per {HOSTILE}", "core-hours", [(HOSTILE, 3.0)], "c1")
    assert "<script" not in svg and 'onload="' not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in svg
    root = ET.fromstring(svg)  # well-formed, and the label reads back as it was
    bar = root.find("{http://www.w3.org/2000/svg}g")
    assert bar.get("data-label") == HOSTILE
    assert bar.find("{http://www.w3.org/2000/svg}title").text == f"{HOSTILE}: 3.0 core-hours"


def test_a_chart_scales_bars_to_the_largest_and_cuts_long_lists():
    svg = bar_chart_svg(
        "GPU-hours per month", "GPU-hours", [("2026-11", 2.0), ("2026-12", 4.0)], "c2"
    )
    widths = [
        rect.get("width") for rect in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}rect")
    ]
    assert widths == ["180.0", "360.0"]
    many = bar_chart_svg("t", "h", [(f"g{i}", 1.0) for i in range(MAX_BARS + 5)], "c3")
    assert many.count("<rect") == MAX_BARS and "and 5 more" in many
    assert "no usage" in bar_chart_svg("t", "h", [], "c4")
