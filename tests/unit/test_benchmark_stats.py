"""The statistics that the benchmarks print (benchmarks/stats.py): literal expectations."""

from __future__ import annotations

import pytest

from benchmarks.stats import Stopwatch, percentile, ratio, success_rate, summarize, verdict, within


def test_percentile_interpolates_between_closest_ranks_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile(range(1, 21), 95) == pytest.approx(19.05)
    assert percentile([7.0], 95) == 7.0


def test_percentile_refuses_no_values_and_q_outside_0_to_100():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="0..100"):
        percentile([1], 101)


def test_summarize_gives_every_figure_and_none_for_an_empty_series():
    assert summarize([3.0, 1.0, 2.0]) == {
        "count": 3, "min": 1.0, "p50": 2.0, "p95": pytest.approx(2.9), "max": 3.0, "mean": 2.0,
    }
    assert summarize([]) == {
        "count": 0, "min": None, "p50": None, "p95": None, "max": None, "mean": None,
    }


def test_within_a_tolerance_of_the_baseline():
    assert within(1.10, 1.00, 0.10) is True
    assert within(1.11, 1.00, 0.10) is False
    assert within(0.50, 1.00, 0.10) is True  # faster always meets the target
    assert within(None, 1.00, 0.10) is None
    assert verdict(True) == "met"
    assert verdict(False) == "NOT met"
    assert verdict(None) == "n/a"


def test_ratio_and_success_rate_say_none_when_undefined():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0) is None
    assert ratio(None, 2.0) is None
    assert success_rate(29, 30) == pytest.approx(29 / 30)
    assert success_rate(0, 0) is None


def test_stopwatch_records_laps_and_the_step_that_failed():
    watch = Stopwatch()
    with watch.lap("login"):
        pass
    with pytest.raises(RuntimeError), watch.lap("spawn"):
        raise RuntimeError("refused")
    assert set(watch.laps) == {"login", "spawn"}
    assert watch.laps["login"] >= 0
    assert watch.failed == {"spawn": "RuntimeError: refused"}
