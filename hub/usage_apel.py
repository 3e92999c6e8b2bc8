"""Usage records as APEL messages: cloud records (v0.4) and accelerator records (v0.1).

``cloud_message`` and ``accelerator_message`` are pure: one record per server per month
it ran in, with durations cumulative from the server's start to the month's end (cloud)
or within the month (accelerators), as APEL's summariser expects. ``write_outgoing`` puts
the messages into the dirq directory that APEL's ``ssmsend`` sends from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dirq.QueueSimple import QueueSimple

from kioskhub.hub.schema.accounting import AccountingSettings
from kioskhub.spawner.usage_store import UsageRecord

CLOUD_HEADER = "APEL-cloud-message: v0.4"
ACCELERATOR_TYPE = "APEL-accelerator-message"
ACCELERATOR_VERSION = "0.1"
CLOUD_FIELDS = (
    "VMUUID",
    "SiteName",
    "CloudComputeService",
    "MachineName",
    "LocalUserId",
    "LocalGroupId",
    "GlobalUserName",
    "FQAN",
    "Status",
    "StartTime",
    "EndTime",
    "SuspendDuration",
    "WallDuration",
    "CpuDuration",
    "CpuCount",
    "NetworkType",
    "NetworkInbound",
    "NetworkOutbound",
    "PublicIPCount",
    "Memory",
    "Disk",
    "BenchmarkType",
    "Benchmark",
    "StorageRecordId",
    "ImageId",
    "CloudType",
)


@dataclass(frozen=True)
class MonthSlice:
    """The part of a record that falls in one calendar month (UTC)."""

    record: UsageRecord
    year: int
    month: int
    month_start: float
    month_end: float

    @property
    def ended_in_month(self) -> bool:
        return self.record.end is not None and self.record.end <= self.month_end

    @property
    def cumulative_wall(self) -> int:
        """Wall seconds from the server's start to the month's end (or its end)."""
        stop = min(_until(self.record), self.month_end)
        return round(max(0.0, stop - self.record.start))

    @property
    def wall_in_month(self) -> int:
        stop = min(_until(self.record), self.month_end)
        return round(max(0.0, stop - max(self.record.start, self.month_start)))

    @property
    def cumulative_cpu(self) -> int:
        """CPU seconds to the month's end, prorated by wall time (the cgroup counts one sum)."""
        total = self.record.wall_seconds
        share = self.cumulative_wall / total if total else 1.0
        return round(self.record.cpu_seconds * min(1.0, share))


def _until(record: UsageRecord) -> float:
    return record.end if record.end is not None else record.last_seen


def month_bounds(year: int, month: int) -> tuple[float, float]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def month_slices(record: UsageRecord, since: float, until: float) -> list[MonthSlice]:
    """The months in which ``record`` ran, limited to those overlapping [since, until)."""
    first = datetime.fromtimestamp(max(record.start, since), UTC)
    last = min(_until(record), until)
    year, month, slices = first.year, first.month, []
    while True:
        start, end = month_bounds(year, month)
        if start >= last and slices:
            break
        slices.append(MonthSlice(record, year, month, start, end))
        if end >= last:
            break
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return slices


def cloud_fields(part: MonthSlice, settings: AccountingSettings, service: str) -> dict:
    """The APEL cloud record of one server in one month; empty values are left out."""
    record = part.record
    fields = {
        "VMUUID": record.record_id,
        "SiteName": settings.site_name,
        "CloudComputeService": service,
        "MachineName": record.username + (f"-{record.server_name}" if record.server_name else ""),
        "LocalUserId": record.username,
        "LocalGroupId": record.groups.split(",")[0] if record.groups else "",
        "GlobalUserName": record.username,
        "FQAN": settings.fqan,
        "Status": "completed" if part.ended_in_month else "started",
        "StartTime": str(round(record.start)),
        "EndTime": str(round(record.end)) if part.ended_in_month else "",
        "SuspendDuration": "0",
        "WallDuration": str(part.cumulative_wall),
        "CpuDuration": str(part.cumulative_cpu),
        "CpuCount": str(max(1, math.ceil(record.cpu_cores))),
        "Memory": str(record.memory_requested // 2**20),
        "Disk": str(record.disk_gb) if record.disk_gb else "",
        "ImageId": record.environment_ref or record.environment,
        "CloudType": settings.cloud_type,
    }
    return {key: value for key, value in fields.items() if value != ""}


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def cloud_message(records, settings: AccountingSettings, service: str, since, until) -> str:
    """One APEL cloud message (v0.4) for ``records``, records separated by ``%%``."""
    lines = [CLOUD_HEADER]
    for record in records:
        for part in month_slices(record, since, until):
            fields = cloud_fields(part, settings, service)
            lines += [f"{key}: {_one_line(fields[key])}" for key in CLOUD_FIELDS if key in fields]
            lines.append("%%")
    return "\n".join(lines) + "\n"


def accelerator_records(records, settings: AccountingSettings, service: str, since, until):
    """APEL accelerator records of the servers that held GPUs, one per server and month."""
    found = []
    for record in records:
        if not record.gpu_count:
            continue
        for part in month_slices(record, since, until):
            entry = {
                "SiteName": settings.site_name,
                "CloudType": settings.cloud_type,
                "CloudComputeService": service,
                "AssociatedRecordType": "cloud",
                "AssociatedRecord": record.record_id,
                "GlobalUserName": record.username,
                "FQAN": settings.fqan or settings.site_name,
                "Count": record.gpu_count,
                "AvailableDuration": part.wall_in_month,
                "ActiveDuration": part.wall_in_month,
                "MeasurementMonth": part.month,
                "MeasurementYear": part.year,
                "Type": "GPU",
            }
            if settings.gpu_model:
                entry["Model"] = settings.gpu_model
            found.append(entry)
    return found


def accelerator_message(entries: list[dict]) -> str:
    return json.dumps(
        {"Type": ACCELERATOR_TYPE, "Version": ACCELERATOR_VERSION, "UsageRecords": entries}
    )


def write_outgoing(folder: Path, messages: list[str]) -> list[str]:
    """Add each message to the dirq queue at ``folder`` (as ssmsend reads it); the names."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    queue = QueueSimple(str(folder))
    return [queue.add(message) for message in messages]
