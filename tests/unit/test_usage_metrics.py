"""The usage counters: increments of a record, counted once across updates and restarts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from kioskhub.hub.schema.site import Site
from kioskhub.spawner import usage_store
from kioskhub.spawner.usage_metrics import (
    Counted,
    Increments,
    RecordCounter,
    group_label,
    increments,
    named_groups,
)
from kioskhub.spawner.usage_recorder import UsageRecorder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


def site_at(tmp_path) -> Site:
    return Site.model_validate(
        {
            "hub": {"state_dir": str(tmp_path)},
            "quotas": {"groups": {"physics": {"gpus": 4}}},
            "groups": {"optics": ["ada"], "physics": ["ada"]},
        }
    )


def record(profile: str, **changes) -> usage_store.UsageRecord:
    values = dict(
        record_id=f"rec-{profile}",
        username="ada",
        groups="optics,physics",
        server_name="",
        backend="local",
        profile=profile,
        environment="python3",
        environment_ref="/opt/venvs/python3",
        cpu_cores=2.0,
        memory_requested=2**30,
        gpu_count=1,
        start=T0,
        last_seen=T0,
        end=None,
        cpu_seconds=0.0,
        memory_peak=0,
    )
    return usage_store.UsageRecord(**{**values, **changes})


def counted(name: str, profile: str, group: str = "physics") -> float | None:
    labels = {"backend": "local", "profile": profile, "group": group}
    return REGISTRY.get_sample_value(f"kioskhub_usage_{name}_seconds_total", labels)


def test_an_update_adds_the_cpu_grown_and_gpus_and_cores_times_the_wall_time():
    after, added = increments(Counted(10.0, T0), 12.5, T0 + 60, gpu_count=2, cores=1.5)
    assert after == Counted(12.5, T0 + 60)
    assert added == Increments(cpu_seconds=2.5, gpu_seconds=120.0, core_seconds=90.0)


def test_an_unreadable_or_smaller_cpu_value_and_an_earlier_time_add_nothing():
    assert increments(Counted(10.0, T0), None, T0, 1, 1.0) == (
        Counted(10.0, T0),
        Increments(0.0, 0.0, 0.0),
    )
    assert increments(Counted(10.0, T0), 4.0, T0 - 30, 1, 1.0) == (
        Counted(10.0, T0),
        Increments(0.0, 0.0, 0.0),
    )


def test_the_group_label_is_the_first_group_the_site_names_else_other_or_none(tmp_path):
    named = named_groups(site_at(tmp_path))
    assert named == ("physics", "optics")
    assert group_label("optics,physics", named) == "physics"
    assert group_label("optics", named) == "optics"
    assert group_label("alice-friends,bob", named) == "other"
    assert group_label("", named) == "none"


def test_a_record_counter_counts_each_update_once(tmp_path):
    counter = RecordCounter(record("metrics-once"), site_at(tmp_path))
    counter.count(30.0, T0 + 60)
    counter.count(30.0, T0 + 60)  # the same values again: nothing new
    counter.count(45.0, T0 + 90)
    assert counted("cpu", "metrics-once") == 45.0
    assert counted("gpu", "metrics-once") == 90.0
    assert counted("core", "metrics-once") == 180.0


def test_a_record_resumed_after_a_restart_counts_only_what_it_grew_by_since(tmp_path):
    """The previous hub process counted 100 CPU seconds up to T0; this one adds the rest."""
    site = site_at(tmp_path)
    path = tmp_path / "usage.sqlite"
    usage_store.open_record(path, record("metrics-resumed", cpu_seconds=100.0))
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpuacct.usage").write_text(f"{130 * 10**9}\n")
    recorder = UsageRecorder(site, lambda: (str(cgroup),), "ada")
    recorder.resume("rec-metrics-resumed")  # no event loop: no periodic updates
    asyncio.run(recorder.update(end=T0 + 120))  # closes the record at T0 + 120
    assert counted("cpu", "metrics-resumed") == 30.0
    assert counted("gpu", "metrics-resumed") == 120.0
    assert counted("core", "metrics-resumed") == 240.0
    (cgroup / "cpuacct.usage").write_text(f"{200 * 10**9}\n")
    asyncio.run(recorder.update(end=T0 + 180))  # closed: the record and counters stay
    assert counted("cpu", "metrics-resumed") == 30.0
    assert usage_store.records(path)[0].cpu_seconds == 130.0


def test_a_record_opened_by_this_process_is_counted_from_zero(tmp_path):
    site = site_at(tmp_path)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.stat").write_text("usage_usec 7000000\nuser_usec 6000000\n")
    recorder = UsageRecorder(site, lambda: (str(cgroup),), "ada")

    async def run() -> None:
        opened = record("metrics-opened", gpu_count=0, groups="bob")
        assert await recorder.reserve(opened, is_admin=False) is None
        await recorder.started(opened.start)
        await recorder.close(stopped=True)

    asyncio.run(run())
    assert counted("cpu", "metrics-opened", "other") == 7.0
    assert counted("gpu", "metrics-opened", "other") == 0.0
