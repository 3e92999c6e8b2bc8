"""Record a server's usage from its start to its end, off the event loop.

``cgroup_usage`` reads what the kernel counted for a server's cgroups (CPU seconds used,
memory peak); ``UsageRecorder`` reserves the server's record before it starts (where the
quotas are checked, ``server_quota``), follows it once it has started, updates it
every ``accounting.update_interval`` seconds while it runs and closes it when the server
is gone, with the cgroup's final values (read before the groups are removed). After a hub
restart the spawner resumes the record; a server found dead then is closed at the time it
was last seen, and records no spawner resumed are closed by ``close_stale``. Each update
also adds what the record grew by to the usage counters on ``/hub/metrics``
(``usage_metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import psutil
from tornado import web

from kioskhub.hub.schema.accounting import usage_database
from kioskhub.hub.schema.site import Site

from . import usage_metrics, usage_store
from .launch_spec import LaunchSpec
from .quota_rules import QuotaRefusal
from .server_quota import reserve_server

log = logging.getLogger("JupyterHub")

STALE_AFTER_INTERVALS = 3
"""A record not updated for this many intervals, with the hub up that long, is orphaned."""
_orphans_closed = False
"""Whether this hub process has closed the records no spawner resumed (done once)."""


def cpu_seconds_from_stat(text: str) -> float | None:
    """CPU seconds in a cgroup v2 ``cpu.stat`` (``usage_usec``), None if absent."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    return None


def cgroup_usage(dirs: tuple[str, ...]) -> tuple[float | None, int | None]:
    """(CPU seconds, memory peak in bytes) of a server's cgroups; None where unreadable.

    v2: ``cpu.stat`` usage_usec and ``memory.peak``; v1: ``cpuacct.usage`` (ns) and
    ``memory.max_usage_in_bytes``.
    """
    cpu: float | None = None
    peak: int | None = None
    for folder in dirs:
        text = _read(posixpath.join(folder, "cpu.stat"))
        if text is not None and cpu is None:
            cpu = cpu_seconds_from_stat(text)
        text = _read(posixpath.join(folder, "cpuacct.usage"))
        if text is not None and cpu is None:
            cpu = int(text) / 1e9
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            text = _read(posixpath.join(folder, name))
            if text is not None and text.strip().isdigit():
                peak = max(peak or 0, int(text))
    return cpu, peak


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError):
        return None


def new_record(site: Site, spec: LaunchSpec, groups: tuple[str, ...], backend: str, now: float):
    """The record of a server that has just started (pure)."""
    environment = spec.environment
    return usage_store.UsageRecord(
        record_id=usage_store.new_record_id(),
        username=spec.username,
        groups=",".join(sorted(groups)),
        server_name=spec.server_name,
        backend=backend,
        profile=spec.profile,
        environment=environment.name,
        environment_ref=environment.image or (str(environment.prefix or "") or environment.kind),
        cpu_cores=spec.cpu,
        memory_requested=spec.memory_bytes,
        gpu_count=spec.gpu_count,
        start=now,
        last_seen=now,
        end=None,
        cpu_seconds=0.0,
        memory_peak=0,
    )


class UsageRecorder:
    """The record of one spawner's server: open, periodic updates, close."""

    def __init__(self, site: Site, cgroup_dirs, label: str):
        self.site = site
        self.path: Path = usage_database(site.hub.state_dir)
        self.cgroup_dirs = cgroup_dirs
        self.label = label
        self.record_id = ""
        self.reserved: usage_store.UsageRecord | None = None
        self._ticker: asyncio.Task | None = None
        self._counter: usage_metrics.RecordCounter | None = None

    @property
    def enabled(self) -> bool:
        return self.site.accounting.enabled

    async def reserve(self, record: usage_store.UsageRecord, is_admin: bool) -> QuotaRefusal | None:
        """Open ``record`` before the server starts, unless a quota refuses it (the refusal).

        The reserved record counts against quotas while the server starts; ``started``
        follows it once the server runs, ``discard`` removes it if the start fails. A store
        that cannot be written refuses the start only when quotas are set (500).
        """
        if not self.enabled:
            return None
        try:
            refusal = await asyncio.to_thread(
                reserve_server, self.path, self.site.quotas, record, is_admin
            )
        except (OSError, sqlite3.Error) as error:
            log.error("Could not open the usage record of %s: %s", self.label, error)
            if self.site.quotas.active:
                raise web.HTTPError(
                    500, "%s", "Could not check your quotas; ask the site's admins."
                ) from None
            return None
        if refusal is None:
            self.reserved = record
        return refusal

    async def resize(self, cpu_cores: float, memory_bytes: int, disk_gb: int) -> None:
        """The reserved record's server got this much (a VM's flavor): record that."""
        record = self.reserved
        if record is None:
            return
        self.reserved = replace(
            record, cpu_cores=cpu_cores, memory_requested=memory_bytes, disk_gb=disk_gb
        )
        try:
            await asyncio.to_thread(
                usage_store.size_record,
                self.path,
                record.record_id,
                cpu_cores,
                memory_bytes,
                disk_gb,
            )
        except (OSError, sqlite3.Error) as error:
            log.error("Could not size the usage record of %s: %s", self.label, error)

    async def started(self, now: float) -> None:
        """The reserved record's server runs: count its wall time from ``now``, follow it."""
        record, self.reserved = self.reserved, None
        if record is None:
            return
        try:
            await asyncio.to_thread(usage_store.mark_started, self.path, record.record_id, now)
        except (OSError, sqlite3.Error) as error:
            log.error("Could not mark the usage record of %s started: %s", self.label, error)
        self._counter = usage_metrics.RecordCounter(
            replace(record, start=now, last_seen=now), self.site
        )
        self.resume(record.record_id)

    async def discard(self) -> None:
        """Remove the reserved record of a start that failed (the server never ran)."""
        record, self.reserved = self.reserved, None
        if record is None:
            return
        try:
            await asyncio.to_thread(usage_store.discard, self.path, record.record_id)
        except (OSError, sqlite3.Error) as error:
            log.error("Could not remove the usage record of %s: %s", self.label, error)

    def resume(self, record_id: str) -> None:
        """Follow ``record_id`` (again, after a hub restart) and update it periodically."""
        self.record_id = record_id
        if record_id and self.enabled and self._ticker is None:
            try:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            except RuntimeError:
                self._ticker = None

    async def _tick(self) -> None:
        interval = self.site.accounting.update_interval
        while True:
            try:
                await self.update()
                await asyncio.to_thread(self._close_orphans, interval)
            except Exception:
                log.exception("Could not update the usage record of %s", self.label)
            await asyncio.sleep(interval)

    def _close_orphans(self, interval: int) -> None:
        """Once per hub process, when it has been up long enough for every spawner to
        resume its record: close the records that none resumed."""
        global _orphans_closed
        hub_up = time.time() - _process_start()
        if _orphans_closed or hub_up <= STALE_AFTER_INTERVALS * interval:
            return
        closed = usage_store.close_stale(self.path, time.time() - hub_up, "server")
        _orphans_closed = True
        if closed:
            log.warning("Closed %d usage records of servers gone with the hub down", closed)

    async def update(self, end: float | None = None) -> None:
        if not self.record_id:
            return
        cpu, peak = await asyncio.to_thread(cgroup_usage, tuple(self.cgroup_dirs()))
        counter = await self._record_counter()
        seen = end or time.time()
        updated = await asyncio.to_thread(
            usage_store.update_record, self.path, self.record_id, seen, cpu, peak, end
        )
        if updated and counter is not None:
            counter.count(cpu, seen)

    async def _record_counter(self) -> usage_metrics.RecordCounter | None:
        """The counter of the record followed, from its stored values when resumed."""
        if self._counter is None or self._counter.record_id != self.record_id:
            record = await asyncio.to_thread(usage_store.open_record_of, self.path, self.record_id)
            self._counter = record and usage_metrics.RecordCounter(record, self.site)
        return self._counter

    async def close(self, stopped: bool) -> None:
        """Close the record with the cgroup's final values; call before they are removed.

        ``stopped``: the hub stopped the server now. Otherwise it was found gone, and a
        record not seen for two intervals (the hub was down) ends when it was last seen.
        """
        if not self.record_id:
            return
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        end = time.time()
        if not stopped:
            seen = await asyncio.to_thread(usage_store.last_seen, self.path, self.record_id)
            if seen is not None and end - seen > 2 * self.site.accounting.update_interval:
                end = seen
        try:
            await self.update(end=end)
        except Exception:
            log.exception("Could not close the usage record of %s", self.label)
        self.record_id = ""


def _process_start() -> float:
    return psutil.Process().create_time()
