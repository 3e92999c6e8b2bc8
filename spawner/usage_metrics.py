"""The usage counters on ``/hub/metrics``: what the usage records grew by in this process.

Each time the hub moves a server's record on (``UsageRecorder.update``, also at close), the
counters grow by the increments written into that record: CPU seconds used (as the record's
``cpu_seconds`` grows), GPU seconds (GPUs × wall time since the last update) and core
seconds allocated (cores requested × wall time). A record the hub re-adopts after a
restart is counted from the values stored before the restart, so what earlier processes
counted is never counted again, and the increments of all processes add up to the records.
Counters start at 0 in each process; Prometheus' ``increase`` and ``rate`` handle that.

Labels: ``backend``, ``profile`` and ``group``. ``group`` is one group per record, so that
the groups add up to the whole: the first of the user's groups in the order the site config
names groups (``quotas.groups``, then ``groups``), ``other`` for a user in none of those,
``none`` for a user in no group. Never a user name: the records have that.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter

from kioskhub.hub.schema.site import Site

from .metrics import metric_label
from .usage_store import UsageRecord

LABELS = ["backend", "profile", "group"]

cpu_seconds = Counter(
    "kioskhub_usage_cpu_seconds",
    "CPU seconds used by servers (from their cgroups), by backend, profile and group.",
    LABELS,
)
gpu_seconds = Counter(
    "kioskhub_usage_gpu_seconds",
    "GPUs allocated × seconds running, by backend, profile and group.",
    LABELS,
)
core_seconds = Counter(
    "kioskhub_usage_core_seconds",
    "CPU cores requested × seconds running (allocated, used or not), by backend, profile "
    "and group.",
    LABELS,
)


def named_groups(site: Site) -> tuple[str, ...]:
    """The groups that may appear as a label, in the order that decides between them."""
    return tuple(dict.fromkeys((*site.quotas.groups, *site.groups)))


def group_label(record_groups: str, named: tuple[str, ...]) -> str:
    """The ``group`` label of a record whose user is in ``record_groups`` (comma-separated)."""
    mine = {g for g in record_groups.split(",") if g}
    if not mine:
        return "none"
    return next((g for g in named if g in mine), "other")


@dataclass(frozen=True)
class Counted:
    """What the counters already hold of one record: its CPU seconds and last-seen time."""

    cpu_seconds: float
    last_seen: float


@dataclass(frozen=True)
class Increments:
    cpu_seconds: float
    gpu_seconds: float
    core_seconds: float


def increments(
    counted: Counted, cpu_read: float | None, seen: float, gpu_count: int, cores: float
) -> tuple[Counted, Increments]:
    """What an update at ``seen`` with ``cpu_read`` adds, as the store records it (pure).

    As in ``usage_store.update_record``: CPU seconds and last-seen only grow, an unreadable
    value (None) or a smaller one adds nothing.
    """
    cpu = max(counted.cpu_seconds, cpu_read or 0.0)
    until = max(counted.last_seen, seen)
    wall = until - counted.last_seen
    return Counted(cpu, until), Increments(
        cpu - counted.cpu_seconds, gpu_count * wall, cores * wall
    )


class RecordCounter:
    """One record's part in the usage counters, from the values it had when first seen."""

    def __init__(self, record: UsageRecord, site: Site) -> None:
        self.record_id = record.record_id
        self.labels = (
            metric_label(record.backend),
            metric_label(record.profile),
            group_label(record.groups, named_groups(site)),
        )
        self.gpu_count = record.gpu_count
        self.cores = record.cpu_cores
        self.counted = Counted(record.cpu_seconds, record.last_seen)

    def count(self, cpu_read: float | None, seen: float) -> Increments:
        """Add what the record grew by in an update at ``seen``; returns that."""
        self.counted, added = increments(self.counted, cpu_read, seen, self.gpu_count, self.cores)
        cpu_seconds.labels(*self.labels).inc(added.cpu_seconds)
        gpu_seconds.labels(*self.labels).inc(added.gpu_seconds)
        core_seconds.labels(*self.labels).inc(added.core_seconds)
        return added
