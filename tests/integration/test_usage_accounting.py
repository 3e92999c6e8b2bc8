"""Usage accounting with a real hub: records while servers run, CPU from the cgroup, and
records that survive a hub restart or a server that died while the hub was down."""

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner import usage_store
from kioskhub.spawner.cgroups import cgroups_available
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.apel_parser import parse_cloud_message
from tests.support.hub_process import (
    VENV_BIN,
    kioskhub_env,
    remove_test_site,
    start_hub,
    write_site_config,
)
from tests.support.user_session import servers_once_checked, signed_in

pytestmark = pytest.mark.integration

INTERVAL = 5
BURN_CPU = "import time\nt = time.process_time()\nwhile time.process_time() - t < 3: pass\n1"


def records_of(folder: Path) -> dict[str, usage_store.UsageRecord]:
    found = usage_store.records(folder / "state" / "usage.sqlite")
    return {record.username: record for record in found}


def wait_for(folder: Path, name: str, check, timeout: float = 4 * INTERVAL):
    deadline = time.monotonic() + timeout
    while True:
        record = records_of(folder).get(name)
        if record is not None and check(record):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"the record of {name} did not get there: {record}")
        time.sleep(0.5)


def server_pid(folder: Path, name: str) -> int:
    for proc in psutil.process_iter(["environ"]):
        env = proc.info["environ"] or {}
        if env.get("JUPYTERHUB_USER") == name and env.get("HOME", "").startswith(str(folder)):
            return proc.pid
    raise AssertionError(f"no server process for {name}")


def test_records_follow_servers_across_a_hub_restart_and_a_death_while_it_was_down():
    unavailable = cgroups_available()
    assert unavailable is None, f"this test reads CPU seconds from cgroups: {unavailable}"
    folder = open_folder("usage")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        hub={"cleanup_servers": False},
        accounting={"update_interval": INTERVAL, "site_name": "KIOSK-TEST"},
    )
    hub = start_hub(config, folder / "hub.log")
    try:
        kept = signed_in(hub.url, "uma", SHARED_PASSWORD)
        lost = signed_in(hub.url, "vic", SHARED_PASSWORD)
        kept.spawn()
        lost.spawn()
        opened = wait_for(folder, "uma", lambda r: r.end is None)
        assert (opened.backend, opened.profile, opened.environment) == ("local", "small", "default")

        assert kept.execute(BURN_CPU)["result"] == "1"
        burnt = wait_for(folder, "uma", lambda r: r.cpu_seconds >= 3)
        assert burnt.memory_peak > 0 and burnt.end is None

        assert hub.stop() == 0
        died_at = time.time()
        psutil.Process(server_pid(folder, "vic")).kill()
        time.sleep(2 * INTERVAL + 1)  # the hub is down for longer than two updates
        hub = start_hub(config, folder / "hub.log")
        assert servers_once_checked(lost, "vic") == {}
        closed = records_of(folder)["vic"]
        assert closed.end is not None, "the server that died with the hub down is still open"
        assert closed.start < closed.end <= died_at
        assert closed.cpu_seconds > 0, "the cgroup's final CPU seconds were not read"

        restarted = time.time()
        wait_for(folder, "uma", lambda r: r.last_seen > restarted and r.end is None)
        kept.stop_server()
        ended = wait_for(folder, "uma", lambda r: r.end is not None)
        assert ended.cpu_seconds >= 3 and ended.end >= restarted

        apel = subprocess.run(
            [
                str(VENV_BIN / "kioskhub"),
                "usage",
                "--config",
                str(config),
                "--since",
                time.strftime("%Y-%m-%d", time.gmtime(opened.start)),
                "--format",
                "apel",
                "--stdout",
            ],
            capture_output=True,
            text=True,
            env=kioskhub_env(),
            check=True,
        ).stdout
        parsed = {r["LocalUserId"]: r for r in parse_cloud_message(apel.strip() + "\n")}
        assert parsed["uma"]["Status"] == "completed" and parsed["uma"]["CpuDuration"] >= 3
        assert parsed["vic"]["EndTime"] == round(closed.end)
    finally:
        remove_test_site(hub, folder)
