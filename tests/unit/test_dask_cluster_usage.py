"""Dask clusters' usage records and quotas (``hub/dask_cluster_usage.py``), on a real store."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from dask_gateway_server.backends.base import Backend, PublicException
from dask_gateway_server.backends.db_base import DBBackendBase

from kioskhub.hub.dask_cluster_usage import ClusterUsage, cluster_record, resized
from kioskhub.hub.dask_gateway_backend import KioskSharedLocalBackend
from kioskhub.hub.schema.accounting import usage_database
from kioskhub.hub.schema.site import Site
from kioskhub.spawner import usage_store

CONFIG = {
    "scheduler_cores": 1,
    "scheduler_memory": 500_000_000,
    "worker_cores": 2,
    "worker_memory": 4_000_000_000,
    "environment_prefix": "/srv/envs/optics",
    "environment_image": "",
}
OPTIONS = {"profile": "small", "environment": "optics"}
REFUSED_NEW = (
    "A new Dask cluster would exceed a quota: .*"
    r"in use now: server 'default' \(2 cores\); this asks for 1 core\."
)


def make_site(tmp_path, **sections) -> Site:
    return Site.model_validate(
        {
            "hub": {"url": "http://127.0.0.1:9000", "state_dir": str(tmp_path / "state")},
            "home": {"root": str(tmp_path / "homes")},
            "dask": {"enabled": True},
            **sections,
        }
    )


def record(workers: int = 0, now: float = 1000.0, **fields) -> usage_store.UsageRecord:
    found = cluster_record(
        username="ada",
        groups=("physics", "astro"),
        options=OPTIONS,
        config=CONFIG,
        workers=workers,
        backend="dask-local",
        now=now,
        name="c1",
    )
    return replace(found, **fields)


def server(username="ada", cores=1.0, name="") -> usage_store.UsageRecord:
    now = time.time()
    return usage_store.UsageRecord(
        usage_store.new_record_id(), username, "physics", name, "local", "small", "base",
        "base", cores, 10**9, 0, now, now, None, 0.0, 0,
    )  # fmt: skip


def test_a_clusters_record_counts_its_scheduler_and_workers():
    found = record(workers=3, record_id="r1")

    assert found == usage_store.UsageRecord(
        record_id="r1",
        username="ada",
        groups="astro,physics",
        server_name="c1",
        backend="dask-local",
        profile="small",
        environment="optics",
        environment_ref="/srv/envs/optics",
        cpu_cores=7.0,
        memory_requested=12_500_000_000,
        gpu_count=0,
        start=1000.0,
        last_seen=1000.0,
        end=None,
        cpu_seconds=0.0,
        memory_peak=0,
        kind="dask",
    )
    grown = resized(found, CONFIG, 1, 2000.0)
    assert (grown.cpu_cores, grown.memory_requested, grown.start, grown.end) == (
        3.0,
        4_500_000_000,
        2000.0,
        None,
    )
    assert grown.record_id != "r1" and grown.server_name == "c1"


def test_a_cluster_in_kiosks_own_environment_names_it():
    config = {**CONFIG, "environment_prefix": ""}
    found = cluster_record(
        username="ada", groups=(), options={}, config=config, workers=0, backend="dask-local",
        now=0.0,
    )  # fmt: skip
    assert (found.environment, found.environment_ref, found.profile) == ("", "kioskhub", "")


def life(usage: ClusterUsage, workers: list[int]) -> list:
    """Start cluster c1, then scale it to each of ``workers``; the refusals."""

    async def run():
        reserved = await usage.reserve(record(now=time.time()), CONFIG, is_admin=False)
        await usage.named(reserved, "c1")
        refusals = []
        for count in workers:
            refusals.append(await usage.resize("c1", count, f"Scaling cluster c1 to {count}"))
        return refusals

    return asyncio.run(run())


def test_a_scale_makes_a_new_segment_and_closes_the_old(tmp_path):
    usage = ClusterUsage(make_site(tmp_path))

    assert life(usage, [2, 1]) == [None, None]
    asyncio.run(usage.close("c1"))

    rows = usage_store.records(usage_database(tmp_path / "state"))
    assert [(r.cpu_cores, r.server_name, r.kind) for r in rows] == [
        (1.0, "c1", "dask"),
        (5.0, "c1", "dask"),
        (3.0, "c1", "dask"),
    ]
    assert rows[0].end == rows[1].start and rows[1].end == rows[2].start
    assert rows[2].end is not None and "c1" not in usage.segments


def test_a_quota_counts_the_users_server_and_refuses_the_scale(tmp_path):
    usage = ClusterUsage(make_site(tmp_path, quotas={"default": {"cores": 4}}))
    usage_store.open_record(usage.path, server(cores=1.0, name="lab"))

    refusals = life(usage, [1, 2])

    assert refusals[0] is None
    assert refusals[1].quota == "quotas.default.cores"
    assert refusals[1].message == (
        "Scaling cluster c1 to 2 would exceed a quota: you may use 4 cores at once "
        "(quotas.default.cores); in use now: server 'lab' (1 core); this asks for 5 cores. "
        "Stop a server or a Dask cluster first, or choose a smaller profile."
    )
    assert usage.segments["c1"].workers == 1
    assert asyncio.run(usage.most_workers("c1", 5, "Adaptive")) == 1
    open_now = [r for r in usage_store.records(usage.path) if r.end is None]
    assert sorted(r.cpu_cores for r in open_now) == [1.0, 3.0]


def test_a_new_cluster_beyond_the_quota_is_refused_with_its_message(tmp_path):
    quotas = {"default": {"cores": 2}}
    usage = ClusterUsage(make_site(tmp_path, quotas=quotas))
    usage_store.open_record(usage.path, server(cores=2.0))

    for is_admin in (False, True):
        with pytest.raises(PublicException, match=REFUSED_NEW):
            asyncio.run(usage.reserve(record(now=time.time()), CONFIG, is_admin=is_admin))
    assert [r.kind for r in usage_store.records(usage.path)] == ["server"]

    # Admins are exempt only where the site says so.
    usage = ClusterUsage(make_site(tmp_path, quotas={**quotas, "admins_exempt": True}))
    asyncio.run(usage.reserve(record(now=time.time()), CONFIG, is_admin=True))
    assert [r.kind for r in usage_store.records(usage.path)] == ["server", "dask"]


def test_shrinking_is_never_refused_even_with_the_budget_spent(tmp_path):
    site = make_site(tmp_path, quotas={"default": {"budgets": [{"core_hours": 1}]}})
    usage = ClusterUsage(site)
    assert life(usage, [1]) == [None]
    spent = replace(server(), start=time.time() - 7200, cpu_cores=4.0)
    usage_store.open_record(usage.path, spent)

    refusals = asyncio.run(usage.resize("c1", 0, "Scaling cluster c1 to 0"))
    grow = asyncio.run(usage.resize("c1", 3, "Scaling cluster c1 to 3"))

    assert refusals is None and usage.segments["c1"].workers == 0
    assert grow.quota == "quotas.default.budgets[0]"
    assert "budget of 1 core-hours per month" in grow.message


def test_nothing_is_recorded_without_accounting_or_quotas(tmp_path):
    usage = ClusterUsage(make_site(tmp_path, accounting={"enabled": False}))

    assert life(usage, [3]) == [None]
    asyncio.run(usage.close("c1"))

    assert not usage_database(tmp_path / "state").exists()


def test_a_new_gateway_closes_only_the_clusters_records_left_open(tmp_path):
    usage = ClusterUsage(make_site(tmp_path))
    seen = time.time() - 600
    left = replace(record(), record_id="old", start=seen - 60, last_seen=seen)
    usage_store.open_record(usage.path, left)
    usage_store.open_record(usage.path, replace(server(), last_seen=seen))

    assert asyncio.run(usage.close_left_open()) == 1

    by_kind = {r.kind: r for r in usage_store.records(usage.path)}
    assert by_kind["dask"].end == seen
    assert by_kind["server"].end is None


def test_cpu_seconds_of_stopped_workers_stay_counted(tmp_path):
    usage = ClusterUsage(make_site(tmp_path))
    life(usage, [1])
    folders = {}
    for process, usec in (("dask-c1-scheduler", 2_000_000), ("dask-c1-worker-a", 5_000_000)):
        folder = tmp_path / "cgroup" / process
        folder.mkdir(parents=True)
        (folder / "cpu.stat").write_text(f"usage_usec {usec}\nuser_usec 1\n")
        (folder / "memory.peak").write_text("1000\n")
        folders[process] = (str(folder),)

    asyncio.run(usage.sample("c1", lambda: folders))
    del folders["dask-c1-worker-a"]  # the worker stopped, its group is gone
    asyncio.run(usage.sample("c1", lambda: folders))

    current = next(r for r in usage_store.records(usage.path) if r.end is None)
    assert (current.cpu_seconds, current.memory_peak) == (7.0, 2000)


def test_adaptive_scaling_is_held_within_the_quotas(tmp_path, monkeypatch):
    backend = KioskSharedLocalBackend(profiles=[], default_profile="")
    backend.usage = ClusterUsage(make_site(tmp_path, quotas={"default": {"cores": 6}}))
    backend.db = SimpleNamespace(list_clusters=lambda username: [])
    usage_store.open_record(backend.usage.path, server(cores=1.0))
    life(backend.usage, [])
    sent = []

    async def forward(self, cluster, msg):
        sent.append(msg)

    monkeypatch.setattr(Backend, "forward_message_to_scheduler", forward)
    cluster = SimpleNamespace(name="c1", username="ada", config=CONFIG, count=0)
    asyncio.run(
        backend.forward_message_to_scheduler(cluster, {"op": "adapt", "minimum": 3, "maximum": 9})
    )

    # 1 (server) + 1 (scheduler) + 2 × 2 (workers) = 6 cores.
    assert sent == [{"op": "adapt", "minimum": 2, "maximum": 2}]


def test_a_scheduler_asking_beyond_what_was_reserved_is_held_there(tmp_path, monkeypatch):
    """The scheduler runs as the user, who can send heartbeats with any count."""
    backend = KioskSharedLocalBackend(profiles=[], default_profile="")
    backend.usage = ClusterUsage(make_site(tmp_path, quotas={"default": {"cores": 6}}))
    usage_store.open_record(backend.usage.path, server(cores=1.0))
    life(backend.usage, [1])
    passed_on = []

    async def heartbeat(self, cluster_name, msg):
        passed_on.append(msg["count"])

    monkeypatch.setattr(DBBackendBase, "on_cluster_heartbeat", heartbeat)
    backend._scale_requests["c1"] = 1
    asyncio.run(backend.on_cluster_heartbeat("c1", {"count": 3}))
    backend._scale_requests.pop("c1")  # adaptive from here
    asyncio.run(backend.on_cluster_heartbeat("c1", {"count": 9}))

    # Scaled to 1: held at 1. Adaptive: 1 (server) + 1 (scheduler) + 2 × 2 = 6 cores.
    assert passed_on == [1, 2]
    open_now = [r for r in usage_store.records(backend.usage.path) if r.end is None]
    assert sorted(r.cpu_cores for r in open_now) == [1.0, 5.0]
