"""A strict parser of APEL cloud messages (v0.4) and accelerator messages (v0.1), written
after the published formats (APEL's cloud record fields and its accelerator record
table), to check KioskHub's records round-trip."""

from __future__ import annotations

import json

CLOUD_HEADER = "APEL-cloud-message: v0.4"
CLOUD_FIELDS = frozenset(
    "VMUUID SiteName CloudComputeService MachineName LocalUserId LocalGroupId GlobalUserName "
    "FQAN Status StartTime EndTime SuspendDuration WallDuration CpuDuration CpuCount "
    "NetworkType NetworkInbound NetworkOutbound PublicIPCount Memory Disk BenchmarkType "
    "Benchmark StorageRecordId ImageId CloudType".split()
)
CLOUD_MANDATORY = ("VMUUID", "SiteName", "MachineName")
CLOUD_INTEGERS = frozenset(
    "StartTime EndTime SuspendDuration WallDuration CpuDuration CpuCount NetworkInbound "
    "NetworkOutbound PublicIPCount Memory Disk".split()
)
CLOUD_STATUSES = frozenset({"started", "completed", "suspended", "paused", "stopped", "error"})
ACCELERATOR_FIELDS = frozenset(
    "MeasurementMonth MeasurementYear AssociatedRecordType AssociatedRecord GlobalUserName FQAN "
    "SiteName Count Cores ActiveDuration AvailableDuration BenchmarkType Benchmark Type Model "
    "CloudType CloudComputeService AccUUID".split()
)
ACCELERATOR_MANDATORY = (
    "MeasurementMonth MeasurementYear AssociatedRecordType AssociatedRecord FQAN SiteName "
    "Count AvailableDuration Type".split()
)


class ApelFormatError(ValueError):
    pass


def parse_cloud_message(text: str) -> list[dict]:
    """The records of a cloud message, integer fields as int; ApelFormatError if malformed."""
    lines = text.split("\n")
    if lines[0] != CLOUD_HEADER:
        raise ApelFormatError(f"first line must be {CLOUD_HEADER!r}, got {lines[0]!r}")
    if lines[-1] != "" or lines[-2] != "%%":
        raise ApelFormatError("the message must end with a %% line and a newline")
    records, current = [], {}
    for number, line in enumerate(lines[1:-1], start=2):
        if line == "%%":
            missing = [key for key in CLOUD_MANDATORY if key not in current]
            if missing:
                raise ApelFormatError(f"record ending on line {number} lacks {missing}")
            records.append(current)
            current = {}
            continue
        key, separator, value = line.partition(": ")
        if not separator or key not in CLOUD_FIELDS:
            raise ApelFormatError(f"line {number}: not a cloud record field: {line!r}")
        if key in current:
            raise ApelFormatError(f"line {number}: {key} repeated")
        if key in CLOUD_INTEGERS:
            if not value.isdigit():
                raise ApelFormatError(f"line {number}: {key} must be an integer, got {value!r}")
            current[key] = int(value)
        elif key == "Status" and value not in CLOUD_STATUSES:
            raise ApelFormatError(f"line {number}: unknown Status {value!r}")
        else:
            current[key] = value
    if current:
        raise ApelFormatError("the last record is not closed by %%")
    return records


def parse_accelerator_message(text: str) -> list[dict]:
    message = json.loads(text)
    if message.get("Type") != "APEL-accelerator-message" or message.get("Version") != "0.1":
        raise ApelFormatError(f"not an accelerator message v0.1: {message.get('Type')!r}")
    for record in message["UsageRecords"]:
        unknown = set(record) - ACCELERATOR_FIELDS
        missing = [key for key in ACCELERATOR_MANDATORY if key not in record]
        if unknown or missing:
            raise ApelFormatError(f"unknown fields {sorted(unknown)}, missing {missing}")
        for key in ("MeasurementMonth", "MeasurementYear", "AvailableDuration", "ActiveDuration"):
            if key in record and not isinstance(record[key], int):
                raise ApelFormatError(f"{key} must be an integer")
    return message["UsageRecords"]
