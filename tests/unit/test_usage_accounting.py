"""Usage records: the store, month slices, CSV/JSON/APEL output and ``kioskhub usage``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
from datetime import UTC, datetime

import pytest
from dirq.QueueSimple import QueueSimple

from kioskhub.hub import usage_apel
from kioskhub.hub.cli import main
from kioskhub.hub.schema.accounting import AccountingSettings
from kioskhub.hub.schema.site import Site
from kioskhub.hub.usage_cli import write_csv
from kioskhub.spawner import usage_store
from kioskhub.spawner.usage_recorder import UsageRecorder, cgroup_usage, cpu_seconds_from_stat
from tests.support.apel_parser import (
    ApelFormatError,
    parse_accelerator_message,
    parse_cloud_message,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def record(**changes) -> usage_store.UsageRecord:
    values = dict(
        record_id="6f1c3a52-0000-4000-8000-000000000001",
        username="ada",
        groups="physics,optics",
        server_name="",
        backend="local",
        profile="small",
        environment="python3",
        environment_ref="/opt/venvs/python3",
        cpu_cores=1.5,
        memory_requested=2 * 2**30,
        gpu_count=0,
        start=at("2026-01-31T12:00:00"),
        last_seen=at("2026-02-01T12:00:00"),
        end=at("2026-02-01T12:00:00"),
        cpu_seconds=4800.0,
        memory_peak=2**29,
    )
    return usage_store.UsageRecord(**{**values, **changes})


SETTINGS = AccountingSettings(site_name="KIOSK-TEST", fqan="/vo.example.org")


def test_a_record_across_a_month_end_gives_one_cumulative_cloud_record_per_month():
    text = usage_apel.cloud_message(
        [record()], SETTINGS, "hub.example.org", 0, at("2027-01-01T00:00:00")
    )
    same = (
        "VMUUID: 6f1c3a52-0000-4000-8000-000000000001\n"
        "SiteName: KIOSK-TEST\n"
        "CloudComputeService: hub.example.org\n"
        "MachineName: ada\n"
        "LocalUserId: ada\n"
        "LocalGroupId: physics\n"
        "GlobalUserName: ada\n"
        "FQAN: /vo.example.org\n"
    )
    sizes = "CpuCount: 2\nMemory: 2048\nImageId: /opt/venvs/python3\nCloudType: KioskHub\n%%\n"
    started = f"StartTime: {round(at('2026-01-31T12:00:00'))}\n"
    assert text == (
        "APEL-cloud-message: v0.4\n"
        f"{same}Status: started\n{started}"
        "SuspendDuration: 0\nWallDuration: 43200\nCpuDuration: 2400\n"
        f"{sizes}"
        f"{same}Status: completed\n{started}"
        f"EndTime: {round(at('2026-02-01T12:00:00'))}\n"
        "SuspendDuration: 0\nWallDuration: 86400\nCpuDuration: 4800\n"
        f"{sizes}"
    )


def test_cloud_records_round_trip_through_a_parser_of_the_published_format():
    records = [
        record(),
        record(record_id="b", server_name="gpu", gpu_count=2, end=None, last_seen=at("2026-03-02")),
    ]
    text = usage_apel.cloud_message(records, SETTINGS, "hub", 0, at("2026-04-01"))
    parsed = parse_cloud_message(text)
    assert [(p["VMUUID"], p["Status"], p["WallDuration"]) for p in parsed] == [
        (records[0].record_id, "started", 43200),
        (records[0].record_id, "completed", 86400),
        ("b", "started", 43200),
        ("b", "started", 43200 + 28 * 86400),
        ("b", "started", round(records[1].wall_seconds)),
    ]
    assert parsed[2]["MachineName"] == "ada-gpu"
    assert all("EndTime" not in p for p in parsed[2:])


def test_the_parser_refuses_what_the_format_does_not_allow():
    good = usage_apel.cloud_message([record()], SETTINGS, "hub", 0, at("2026-04-01"))
    with pytest.raises(ApelFormatError, match="first line"):
        parse_cloud_message(good.replace("v0.4", "v0.2"))
    with pytest.raises(ApelFormatError, match="WallDuration must be an integer"):
        parse_cloud_message(good.replace("WallDuration: 43200", "WallDuration: 4.5"))
    with pytest.raises(ApelFormatError, match="lacks"):
        parse_cloud_message(good.replace("SiteName: KIOSK-TEST\n", "", 1))


def test_a_user_chosen_value_cannot_add_lines_or_records_to_a_message():
    hostile = record(server_name="x\n%%\nVMUUID: forged\nSiteName: S\nMachineName: m")
    text = usage_apel.cloud_message([hostile], SETTINGS, "hub", 0, at("2026-04-01"))
    parsed = parse_cloud_message(text)
    assert [p["VMUUID"] for p in parsed] == [hostile.record_id] * 2
    assert parsed[0]["MachineName"] == "ada-x %% VMUUID: forged SiteName: S MachineName: m"


def test_gpu_use_gives_accelerator_records_within_each_month():
    gpus = record(gpu_count=2)
    entries = usage_apel.accelerator_records(
        [gpus, record(record_id="cpu-only")], SETTINGS, "hub", 0, at("2026-04-01")
    )
    parsed = parse_accelerator_message(usage_apel.accelerator_message(entries))
    assert [(e["MeasurementMonth"], e["AvailableDuration"], e["Count"]) for e in parsed] == [
        (1, 43200, 2),
        (2, 43200, 2),
    ]
    assert {e["AssociatedRecord"] for e in parsed} == {gpus.record_id}
    assert parsed[0]["Type"] == "GPU" and parsed[0]["AssociatedRecordType"] == "cloud"


def test_the_period_limits_the_months_reported():
    slices = usage_apel.month_slices(record(), at("2026-02-01"), at("2026-03-01"))
    assert [(s.year, s.month) for s in slices] == [(2026, 2)]
    assert slices[0].cumulative_wall == 86400


def test_the_store_opens_updates_and_closes_records_root_only(tmp_path):
    path = tmp_path / "state" / "usage.sqlite"
    opened = record(end=None, cpu_seconds=0.0, memory_peak=0, last_seen=record().start)
    usage_store.open_record(path, opened)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    usage_store.update_record(path, record().record_id, at("2026-02-01"), 10.0, 100)
    usage_store.update_record(path, record().record_id, at("2026-02-01T01:00"), None, 50)
    (found,) = usage_store.records(path)
    assert (found.end, found.cpu_seconds, found.memory_peak) == (None, 10.0, 100)
    assert found.last_seen == at("2026-02-01T01:00")
    usage_store.update_record(
        path, found.record_id, at("2026-02-02"), 20.0, 200, end=at("2026-02-02")
    )
    usage_store.update_record(
        path, found.record_id, at("2026-02-03"), 30.0, 300, end=at("2026-02-03")
    )
    (closed,) = usage_store.records(path)
    assert (closed.end, closed.cpu_seconds) == (at("2026-02-02"), 20.0)
    assert usage_store.records(path, since=at("2026-02-03")) == []


def test_stale_records_close_at_their_last_seen_time(tmp_path):
    path = tmp_path / "usage.sqlite"
    usage_store.open_record(path, record(record_id="old", end=None, last_seen=at("2026-02-01")))
    usage_store.open_record(path, record(record_id="live", end=None, last_seen=at("2026-02-05")))
    assert usage_store.close_stale(path, at("2026-02-04")) == 1
    ends = {r.record_id: r.end for r in usage_store.records(path)}
    assert ends == {"old": at("2026-02-01"), "live": None}


def test_the_store_does_not_follow_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("not a database")
    (tmp_path / "usage.sqlite").symlink_to(target)
    with pytest.raises(OSError):
        usage_store.connect(tmp_path / "usage.sqlite")
    assert target.read_text() == "not a database"


def test_csv_has_one_row_per_record_and_defuses_formulas():
    out = io.StringIO()
    write_csv([record(server_name="=HYPERLINK(1)")], out)
    header, row = out.getvalue().splitlines()
    assert header.split(",")[:3] == ["record_id", "username", "groups"]
    assert header.endswith(",wall_seconds") and row.endswith(",86400.0")
    assert ",'=HYPERLINK(1)," in row


def test_cgroup_counters_are_read_from_v2_and_v1_files(tmp_path):
    assert cpu_seconds_from_stat("usage_usec 2500000\nuser_usec 1\n") == 2.5
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir(), v1.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 1500000\n")
    (v2 / "memory.peak").write_text("4096\n")
    (v1 / "cpuacct.usage").write_text("3000000000\n")
    (v1 / "memory.max_usage_in_bytes").write_text("8192\n")
    assert cgroup_usage((str(v2),)) == (1.5, 4096)
    assert cgroup_usage((str(v1),)) == (3.0, 8192)
    assert cgroup_usage((str(tmp_path / "gone"),)) == (None, None)


@pytest.fixture
def site_config(tmp_path):
    config = tmp_path / "kioskhub.yaml"
    config.write_text("hub:\n  state_dir: state\naccounting:\n  site_name: KIOSK-TEST\n")
    usage_store.open_record(tmp_path / "state" / "usage.sqlite", record(gpu_count=1))
    return config


def test_usage_command_writes_json_and_apel_messages_for_ssmsend(site_config, capsys):
    args = ["usage", "--config", str(site_config), "--since", "2026-01-01"]
    assert main([*args, "--format", "json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["username"] == "ada" and shown["wall_seconds"] == 86400
    assert main([*args, "--until", "2026-03-01", "--format", "apel"]) == 0
    outgoing = site_config.parent / "state" / "apel" / "outgoing"
    assert str(outgoing) in capsys.readouterr().out
    queue = QueueSimple(str(outgoing))
    messages = []
    for name in queue:
        queue.lock(name)
        messages.append(queue.get(name).decode())
    cloud = next(m for m in messages if m.startswith("APEL-cloud-message"))
    accelerator = next(m for m in messages if m.startswith("{"))
    assert len(parse_cloud_message(cloud)) == 2
    assert len(parse_accelerator_message(accelerator)) == 2


def test_usage_command_explains_bad_input(site_config, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["usage", "--config", str(site_config), "--since", "January"])
    assert "'January' is not a day: write YYYY-MM-DD" in capsys.readouterr().err
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text("hub:\n  state_dir: state\n")
    assert (
        main(["usage", "--config", str(unnamed), "--since", "2026-01-01", "--format", "apel"]) == 2
    )
    assert "accounting.site_name is empty" in capsys.readouterr().err


def test_no_record_is_kept_when_accounting_is_off(tmp_path):
    site = Site.model_validate(
        {"hub": {"state_dir": str(tmp_path)}, "accounting": {"enabled": False}}
    )
    recorder = UsageRecorder(site, lambda: (), "ada")
    assert asyncio.run(recorder.reserve(record(end=None), is_admin=False)) is None
    asyncio.run(recorder.started(at("2026-02-01")))
    assert recorder.record_id == "" and not (tmp_path / "usage.sqlite").exists()


def test_a_vm_record_carries_its_flavors_cores_memory_and_disk(tmp_path):
    """A VM's record is sized to its flavor (2 vCPUs, 4096 MiB, 20 GB) and its cloud record
    says so, Disk included; a store of the earlier version gets the disk column."""
    path = tmp_path / "usage.sqlite"
    with usage_store.connect(path) as db:  # the store as the previous version made it
        db.execute("ALTER TABLE usage DROP COLUMN disk_gb")
    vm = record(backend="openstack", end=None)
    usage_store.open_record(path, vm)
    usage_store.size_record(path, vm.record_id, 2, 4096 * 2**20, 20)
    (stored,) = usage_store.records(path)
    assert (stored.cpu_cores, stored.memory_requested, stored.disk_gb) == (2, 4096 * 2**20, 20)
    parsed = parse_cloud_message(
        usage_apel.cloud_message([stored], SETTINGS, "hub", 0, at("2026-04-01"))
    )
    assert {(p["CpuCount"], p["Memory"], p["Disk"]) for p in parsed} == {(2, 4096, 20)}
