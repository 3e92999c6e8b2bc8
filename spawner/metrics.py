"""KioskHub's Prometheus metrics of spawns, running servers and GPUs, in the hub process.

They are registered in prometheus-client's default registry, which JupyterHub serves at
``/hub/metrics`` beside its own ``jupyterhub_*`` metrics (to tokens with ``read:metrics``).
Every label has few values: a backend name, a profile name from the site config, a result
or a reason from the fixed sets below; never a user name, an environment a user named, or
an error message.

Names the dashboard shows that other parts of KioskHub feed (defined there, not here):
``kioskhub_servers_culled_total`` (idle culling), ``kioskhub_usage_*`` (``usage_metrics``),
and ``kioskhub_spawn_refusals_total{reason="quota"}`` (quotas, through ``record_refusal``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SPAWN_RESULTS = ("success", "failure")
"""``success``: the server answered; ``failure``: it was started and failed (a refusal of
the choice before anything starts is not a failed spawn, see ``REFUSAL_REASONS``)."""

REFUSAL_REASONS = ("choice", "identity", "no_free_gpu", "quota")
"""Why a spawn was refused before anything started: the choice cannot be launched (400),
the user has no valid lab identity (400), no GPU of the kind is free (503), a quota."""

SPAWN_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))

spawns = Counter(
    "kioskhub_spawns",
    "Server starts that got past the choice, by spawn backend, profile and result.",
    ["backend", "profile", "result"],
)
spawn_duration = Histogram(
    "kioskhub_spawn_duration_seconds",
    "Time from start to an answering server (or to the failure), by backend, profile, result.",
    ["backend", "profile", "result"],
    buckets=SPAWN_BUCKETS,
)
spawn_refusals = Counter(
    "kioskhub_spawn_refusals",
    "Spawns refused before anything started, by reason (" + ", ".join(REFUSAL_REASONS) + ").",
    ["backend", "reason"],
)
servers_running = Gauge(
    "kioskhub_servers_running",
    "Servers this hub started (or re-adopted after a restart) that are running.",
    ["backend", "profile"],
)
gpus_allocated = Gauge(
    "kioskhub_gpus_allocated",
    "GPUs assigned to running servers on the hub's machine.",
    ["backend"],
)


def metric_label(value: str | None) -> str:
    """A label value for a name from the site config; '' (never a missing label) as 'none'."""
    return value or "none"


def record_spawn(backend: str, profile: str, result: str, seconds: float) -> None:
    """Count one start and its duration; ``result`` is one of ``SPAWN_RESULTS``."""
    if result not in SPAWN_RESULTS:
        raise ValueError(f"unknown spawn result {result!r}; one of {SPAWN_RESULTS}")
    labels = (metric_label(backend), metric_label(profile), result)
    spawns.labels(*labels).inc()
    spawn_duration.labels(*labels).observe(seconds)


def record_refusal(backend: str, reason: str) -> None:
    """Count one refused spawn; ``reason`` is one of ``REFUSAL_REASONS``."""
    if reason not in REFUSAL_REASONS:
        raise ValueError(f"unknown refusal reason {reason!r}; one of {REFUSAL_REASONS}")
    spawn_refusals.labels(metric_label(backend), reason).inc()


class RunningServer:
    """One server's part in ``servers_running`` and ``gpus_allocated``: counted once when it
    runs, given back once when it is gone, however often either is reported."""

    def __init__(self) -> None:
        self._counted: tuple[str, str, int] | None = None

    def running(self, backend: str, profile: str, gpu_count: int) -> None:
        if self._counted is not None:
            return
        self._counted = (metric_label(backend), metric_label(profile), gpu_count)
        servers_running.labels(*self._counted[:2]).inc()
        gpus_allocated.labels(self._counted[0]).inc(gpu_count)

    def gone(self) -> None:
        if self._counted is None:
            return
        backend, profile, gpu_count = self._counted
        self._counted = None
        servers_running.labels(backend, profile).dec()
        gpus_allocated.labels(backend).dec(gpu_count)
