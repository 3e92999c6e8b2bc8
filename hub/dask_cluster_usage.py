"""Usage records and quotas of Dask clusters, kept by the gateway (``KioskBackend``).

A cluster is recorded as the hub records a server (``spawner/usage_store.py``, kind
``dask``, its name as ``server_name``), one record per size so that core-hours are exact:
starting a cluster reserves the record of its scheduler alone; each scale (or change of an
adaptive cluster's size) reserves the record of the new size, which closes the previous
one at its start (``usage_store.reserve(replaces=)``). The site's quotas
(``spawner/quota_rules.py``) decide each growth in that same transaction, so a user's
servers and clusters together stay within them; shrinking is never refused. CPU seconds
and memory peaks come from the cluster's cgroups where its processes have groups of their
own (``dask_cluster_cgroups``); containers' are not read and stay 0.

The gateway keeps its clusters in memory, so they die with it: records that a gateway left
open are closed when the next one starts, at the time they were last seen. All SQLite I/O
runs in threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from dask_gateway_server.backends.base import PublicException
from pydantic import ValidationError

from kioskhub.hub.schema.accounting import usage_database
from kioskhub.hub.schema.quotas import QuotaLimits
from kioskhub.hub.schema.site import Site
from kioskhub.spawner import quota_rules, usage_store
from kioskhub.spawner.usage_recorder import cgroup_usage

log = logging.getLogger("DaskGateway")

ProcessGroups = Callable[[], Mapping[str, tuple[str, ...]]]
"""The cgroup folders of each process of a cluster (read in a thread)."""


def cluster_size(config: Mapping, workers: int) -> tuple[float, int]:
    """Cores and bytes of a cluster of ``config`` (a ClusterConfig's dict) with ``workers``."""
    cores = config["scheduler_cores"] + workers * config["worker_cores"]
    memory = config["scheduler_memory"] + workers * config["worker_memory"]
    return float(cores), int(memory)


def cluster_record(
    *,
    username: str,
    groups: tuple[str, ...],
    options: Mapping,
    config: Mapping,
    workers: int,
    backend: str,
    now: float,
    name: str = "",
) -> usage_store.UsageRecord:
    """The usage record of a cluster of ``config`` with ``workers`` workers (pure)."""
    cores, memory = cluster_size(config, workers)
    return usage_store.UsageRecord(
        record_id=usage_store.new_record_id(),
        username=username,
        groups=",".join(sorted(groups)),
        server_name=name,
        backend=backend,
        profile=str(options.get("profile", "")),
        environment=str(options.get("environment", "")),
        environment_ref=config.get("environment_image")
        or config.get("environment_prefix")
        or "kioskhub",
        cpu_cores=cores,
        memory_requested=memory,
        gpu_count=0,
        start=now,
        last_seen=now,
        end=None,
        cpu_seconds=0.0,
        memory_peak=0,
        kind="dask",
    )


def resized(
    record: usage_store.UsageRecord, config: Mapping, workers: int, now: float
) -> usage_store.UsageRecord:
    """The record of the next size segment of ``record``'s cluster (pure)."""
    cores, memory = cluster_size(config, workers)
    return replace(
        record,
        record_id=usage_store.new_record_id(),
        cpu_cores=cores,
        memory_requested=memory,
        start=now,
        last_seen=now,
        cpu_seconds=0.0,
        memory_peak=0,
    )


@dataclass
class Segment:
    """The open record of one running cluster, at its present size."""

    record: usage_store.UsageRecord
    config: Mapping
    workers: int
    is_admin: bool
    cpu_before: float = 0.0
    """The cluster's CPU seconds when this segment began."""


class ClusterUsage:
    """The records of the gateway's running clusters: reserve, resize, sample, close.

    Inactive (records nothing, refuses nothing) without a site, or when the site neither
    records usage (``accounting.enabled``) nor sets quotas.
    """

    def __init__(self, site: Site | None) -> None:
        self.site = site
        self.path = usage_database(site.hub.state_dir) if site is not None else None
        self.segments: dict[str, Segment] = {}
        self.process_cpu: dict[str, dict[str, float]] = {}
        """Per cluster, the last CPU seconds read of each process (kept once it stops)."""

    @property
    def enabled(self) -> bool:
        site = self.site
        return site is not None and (site.accounting.enabled or site.quotas.active)

    # ---- quotas (blocking: in threads) ----------------------------------------------

    def _overrides(self, now: float) -> dict[str, QuotaLimits]:
        found = {}
        for username, override in usage_store.overrides(self.path, now).items():
            try:
                found[username] = QuotaLimits.model_validate(json.loads(override.limits))
            except (ValueError, ValidationError) as error:
                log.error("Ignoring the quota override of %s: %s", username, error)
        return found

    def _decider(self, asked: quota_rules.Demand, is_admin: bool, now: float, overrides=None):
        """(decide for ``usage_store.reserve``, the start of the records it needs)."""
        quotas = self.site.quotas
        if overrides is None:
            overrides = self._overrides(now) if quotas.active else {}

        def decide(open_records, recent_records):
            if not quotas.active:
                return None
            return quota_rules.decide(
                quotas,
                asked,
                is_admin=is_admin,
                overrides=overrides,
                open_records=open_records,
                recent_records=recent_records,
                now=now,
            )

        return decide, quota_rules.records_since(quotas, overrides, now)

    def _reserve(self, record, label: str, is_admin: bool, replaces: str = "", grows=True):
        decide, since = self._decider(
            quota_rules.Demand.of_record(record, label), is_admin, record.start
        )
        if not grows:
            decide = lambda open_records, recent_records: None  # noqa: E731 (never refused)
        return usage_store.reserve(self.path, record, decide, since, replaces)

    def _most_workers(self, segment: Segment, upto: int, label: str) -> int:
        """The most workers, up to ``upto``, that the quotas allow ``segment``'s cluster."""
        if upto <= segment.workers:
            return upto
        now = time.time()
        overrides = self._overrides(now)
        since = quota_rules.records_since(self.site.quotas, overrides, now)
        found = usage_store.records(self.path, since)
        running = [r for r in found if r.end is None and r.record_id != segment.record.record_id]
        for workers in range(upto, segment.workers, -1):
            asked = quota_rules.Demand.of_record(
                resized(segment.record, segment.config, workers, now), label
            )
            decide, _ = self._decider(asked, segment.is_admin, now, overrides)
            if decide(running, found) is None:
                return workers
        return segment.workers

    # ---- the cluster's life ----------------------------------------------------------

    async def reserve(self, record: usage_store.UsageRecord, config, is_admin: bool) -> Segment:
        """Reserve a new cluster's record; PublicException with the quota's message."""
        segment = Segment(record, config, 0, is_admin)
        if not self.enabled:
            return segment
        refusal = await asyncio.to_thread(self._reserve, record, "A new Dask cluster", is_admin)
        if refusal is not None:
            raise PublicException(refusal.message)
        return segment

    async def named(self, segment: Segment, name: str) -> None:
        """The reserved cluster was created as ``name``: follow it from now on."""
        segment.record = replace(segment.record, server_name=name)
        self.segments[name] = segment
        if self.enabled:
            await asyncio.to_thread(
                usage_store.name_record, self.path, segment.record.record_id, name
            )

    async def discard(self, segment: Segment) -> None:
        """The reserved cluster was never created."""
        if self.enabled:
            await asyncio.to_thread(usage_store.discard, self.path, segment.record.record_id)

    async def resize(self, name: str, workers: int, label: str) -> quota_rules.QuotaRefusal | None:
        """Record ``name`` at ``workers`` workers from now, unless a quota refuses it."""
        segment = self.segments.get(name)
        if segment is None or workers == segment.workers or not self.enabled:
            return None
        record = resized(segment.record, segment.config, workers, time.time())
        refusal = await asyncio.to_thread(
            self._reserve,
            record,
            label,
            segment.is_admin,
            segment.record.record_id,
            workers > segment.workers,
        )
        if refusal is None:
            segment.record, segment.workers = record, workers
            segment.cpu_before = sum(self.process_cpu.get(name, {}).values())
        return refusal

    async def most_workers(self, name: str, upto: int, label: str) -> int:
        segment = self.segments.get(name)
        if segment is None or not self.enabled or not self.site.quotas.active:
            return upto
        return await asyncio.to_thread(self._most_workers, segment, upto, label)

    async def sample(self, name: str, groups: ProcessGroups, end: float | None = None) -> None:
        """Read the cluster's cgroups and move its record on (closing it at ``end``)."""
        segment = self.segments.get(name)
        if segment is None or not self.enabled:
            return
        await asyncio.to_thread(self._sample, name, segment, groups, end)

    def _sample(self, name: str, segment: Segment, groups: ProcessGroups, end) -> None:
        cpu_of = self.process_cpu.setdefault(name, {})
        peaks = []
        for process, dirs in groups().items():
            cpu, peak = cgroup_usage(dirs)
            if cpu is not None:
                cpu_of[process] = max(cpu, cpu_of.get(process, 0.0))
            if peak is not None:
                peaks.append(peak)
        total = sum(cpu_of.values())
        usage_store.update_record(
            self.path,
            segment.record.record_id,
            end or time.time(),
            max(0.0, total - segment.cpu_before) if cpu_of else None,
            sum(peaks) if peaks else None,
            end,
        )

    async def close(self, name: str) -> None:
        """The cluster has stopped: close its record (``sample`` its groups before they go)."""
        try:
            await self.sample(name, dict, end=time.time())
        finally:
            self.segments.pop(name, None)
            self.process_cpu.pop(name, None)

    async def close_left_open(self) -> int:
        """Close the records of clusters that died with an earlier gateway."""
        if not self.enabled:
            return 0
        return await asyncio.to_thread(usage_store.close_stale, self.path, time.time(), "dask")

    async def follow(self, groups_of: Callable[[str], ProcessGroups]) -> None:
        """Sample every running cluster each ``accounting.update_interval`` seconds."""
        while self.enabled:
            await asyncio.sleep(self.site.accounting.update_interval)
            for name in list(self.segments):
                try:
                    await self.sample(name, groups_of(name))
                except Exception:
                    log.exception("Could not update the usage record of cluster %s", name)


class RecordsUsage:
    """A gateway backend's hooks of its clusters' usage (first among its bases, so that
    every way to stop passes here): adaptive sizes from the heartbeats, within the quotas;
    the cgroups read before a worker's or the cluster's go; the record closed once the
    cluster has stopped. The backend holds ``usage`` (a ``ClusterUsage``), ``usage_groups``
    and ``_scale_requests`` (clusters whose size a scale request set)."""

    async def on_cluster_heartbeat(self, cluster_name, msg):
        """The scheduler's wanted size, held within what was reserved.

        The scheduler runs as the user, who can send it any count. After a scale
        request, a count beyond the size reserved for it is held there. Otherwise
        (adaptive), each new size is recorded within the quotas; a size they refuse
        (someone took what was free since ``adapt``) is held at the most they allow.
        """
        segment = self.usage.segments.get(cluster_name)
        count = msg["count"]
        if segment is not None and cluster_name in self._scale_requests:
            if count > segment.workers and self.usage.enabled:
                self.log.warning(
                    "Cluster %s asked for %d workers, %d reserved: held there",
                    cluster_name, count, segment.workers,
                )  # fmt: skip
                msg = {**msg, "count": segment.workers}
        elif segment is not None:
            label = f"Adaptive scaling of cluster {cluster_name} to {count} workers"
            if count != segment.workers and await self.usage.resize(cluster_name, count, label):
                most = await self.usage.most_workers(cluster_name, count, label)
                await self.usage.resize(cluster_name, most, label)
                self.log.warning("%s would exceed a quota: held at %d", label, most)
                msg = {**msg, "count": most}
        await super().on_cluster_heartbeat(cluster_name, msg)

    async def do_stop_worker(self, worker):
        cluster = worker.cluster.name
        await self.usage.sample(cluster, self.usage_groups(cluster))
        await super().do_stop_worker(worker)

    async def do_stop_cluster(self, cluster):
        await self.usage.sample(cluster.name, self.usage_groups(cluster.name))
        try:
            await super().do_stop_cluster(cluster)
        finally:
            await self.usage.close(cluster.name)
