"""Pure statistics for the benchmarks: percentiles, summaries, target checks, a stopwatch.

No I/O here, so that ``tests/unit/test_benchmark_stats.py`` can check every number that the
benchmarks print.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between closest ranks.

    The same definition as numpy's default (``method="linear"``): p50 of [1, 2, 3, 4] is 2.5.
    Raises ValueError on no values, so that an empty series is never reported as 0.
    """
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, p50, p95, max and mean of ``values`` (None for each when there are none)."""
    if not values:
        return {"count": 0, "min": None, "p50": None, "p95": None, "max": None, "mean": None}
    return {
        "count": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


def ratio(candidate: float | None, baseline: float | None) -> float | None:
    """``candidate / baseline``, or None when either is missing or the baseline is 0."""
    if candidate is None or baseline is None or baseline == 0:
        return None
    return candidate / baseline


def within(candidate: float | None, baseline: float | None, tolerance: float) -> bool | None:
    """Whether ``candidate`` is at most ``tolerance`` (0.10 = 10%) above ``baseline``.

    Faster than the baseline always meets the target. None when either is missing.
    """
    if candidate is None or baseline is None:
        return None
    return candidate <= baseline * (1 + tolerance)


def success_rate(succeeded: int, attempted: int) -> float | None:
    """Share of attempts that succeeded (0..1), None when nothing was attempted."""
    return None if attempted == 0 else succeeded / attempted


def verdict(met: bool | None) -> str:
    """'met', 'NOT met' or 'n/a' for a target check."""
    return "n/a" if met is None else ("met" if met else "NOT met")


@dataclass
class Stopwatch:
    """Named laps of one sequence of steps: ``with watch.lap("spawn"): ...``.

    A lap that raises is still recorded (as failed), so that a failure's duration shows too.
    """

    laps: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def lap(self, name: str) -> _Lap:
        return _Lap(self, name)


class _Lap:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch, self.name = watch, name

    def __enter__(self) -> _Lap:
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.watch.laps[self.name] = time.perf_counter() - self.started
        if error is not None:
            self.watch.failed[self.name] = f"{kind.__name__}: {error}"
