"""The environment builder's Prometheus metrics, in the builder service's process.

The service serves them at ``/services/environments/metrics`` to tokens with the
``read:metrics`` scope (``metrics_handler``). Labels: ``builder`` (local, container, gitlab)
and ``result`` (``BUILD_RESULTS``), never a repository, a user or an error message.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

BUILD_RESULTS = ("ready", "failed", "stopped")
"""``ready``: built; ``failed``: the build said why it failed; ``stopped``: timed out,
cancelled or crashed."""

BUILD_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))

builds = Counter(
    "kioskhub_environment_builds",
    "Environment builds that ended, by builder and result (" + ", ".join(BUILD_RESULTS) + ").",
    ["builder", "result"],
)
build_duration = Histogram(
    "kioskhub_environment_build_duration_seconds",
    "Time from a build's start to its end, by builder and result.",
    ["builder", "result"],
    buckets=BUILD_BUCKETS,
)
builds_queued = Gauge(
    "kioskhub_environment_builds_queued",
    "Builds waiting or running in the builder service's queue.",
)


def record_build(builder: str, result: str, seconds: float) -> None:
    """Count one ended build and its duration; ``result`` is one of ``BUILD_RESULTS``."""
    if result not in BUILD_RESULTS:
        raise ValueError(f"unknown build result {result!r}; one of {BUILD_RESULTS}")
    builds.labels(builder or "none", result).inc()
    build_duration.labels(builder or "none", result).observe(seconds)


def count_queue(pending: Callable[[], int]) -> None:
    """Read the queue length from ``pending`` at each scrape (the service has one queue)."""
    builds_queued.set_function(pending)
