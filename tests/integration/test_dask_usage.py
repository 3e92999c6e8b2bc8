"""Dask clusters in the usage records and under the quotas: a real hub, server and gateway.

The user's real server holds one core; ``quotas.default.cores`` is 3, so a cluster's
scheduler (1 core) and one worker (1 core) fit and a second worker does not.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from dask_gateway import GatewayClusterError

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.hub.schema.accounting import usage_database
from kioskhub.spawner import usage_store
from kioskhub.spawner.cgroups import PARENT_GROUP, cgroups_available, current_layout
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import gateway_for, running_cluster, wait_until
from tests.support.hub_process import (
    VENV_BIN,
    free_port,
    kioskhub_env,
    start_hub,
    write_site_config,
)
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration

INTERVAL = 5


@pytest.fixture(scope="module")
def site():
    folder = open_folder("dask-usage")
    write_sample_data(folder / "data")
    seen = time.time() - 600
    left_open = usage_store.UsageRecord(
        "left-open", "lise", "scientists", "lost", "dask-local", "small", "", "kioskhub",
        1.0, 500_000_000, 0, seen - 60, seen, None, 0.0, 0, "dask",
    )  # fmt: skip
    usage_store.open_record(usage_database(folder / "state"), left_open)
    ports = {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()}
    config = write_site_config(
        folder,
        profiles=[{"name": "small", "cpu": 1, "memory": "1Gi", "default": True}],
        groups={"scientists": ["lise"]},
        dask={
            "enabled": True,
            "groups": ["scientists"],
            "workers": {"worker_cores": 1, "worker_memory": "500M", "max_workers": 3},
            "scheduler": {"cores": 1, "memory": "500M"},
            "ports": ports,
        },
        accounting={"update_interval": INTERVAL},
        quotas={"default": {"cores": 3}},
    )
    hub = start_hub(config, folder / "hub.log")
    gateways = {}
    yield {"hub": hub, "folder": folder, "gateways": gateways, "config": config, "seen": seen}
    gateways.clear()
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def records_of(site, name: str) -> list[usage_store.UsageRecord]:
    found = usage_store.records(usage_database(site["folder"] / "state"))
    return [r for r in found if r.server_name == name]


def cluster_groups_left(name: str) -> list[Path]:
    """The cgroups of cluster ``name`` under every controller (v1: one each)."""
    layout = current_layout()
    controllers = (layout.memory_dir, layout.cpu_dir, layout.cpuacct_dir, layout.pids_dir)
    return [
        group
        for folder in controllers
        if folder is not None
        for group in Path(folder, PARENT_GROUP).glob(f"dask-{name}-*")
    ]


def test_a_new_gateway_closes_the_records_an_earlier_one_left_open(site):
    # The hub answers before its gateway service has finished starting.
    wait_until(
        lambda: records_of(site, "lost")[0].end is not None,
        60,
        "the gateway never closed the record an earlier gateway left open",
    )
    (left,) = records_of(site, "lost")
    assert left.end == site["seen"]


def test_a_clusters_records_follow_its_size_within_the_quota_and_end_with_it(site):
    unavailable = cgroups_available()
    assert unavailable is None, f"this test reads CPU seconds from cgroups: {unavailable}"
    lise = signed_in(site["hub"].url, "lise", SHARED_PASSWORD)
    assert lise.spawn()[-1].get("ready")
    gateway = gateway_for(site, lise)

    name = running_cluster(gateway)
    (started,) = records_of(site, name)
    assert (started.kind, started.username, started.groups, started.profile) == (
        "dask", "lise", "scientists", "small",
    )  # fmt: skip
    assert (started.cpu_cores, started.memory_requested, started.backend) == (
        1.0, 500_000_000, "dask-local",
    )  # fmt: skip

    gateway.scale_cluster(name, 1)
    first, grown = records_of(site, name)
    assert first.end == grown.start and grown.end is None
    assert (grown.cpu_cores, grown.memory_requested) == (2.0, 1_000_000_000)

    refusal = (
        f"Scaling cluster {name} to 2 workers would exceed a quota: you may use 3 cores at once "
        "(quotas.default.cores); in use now: server 'default' (1 core); this asks for 3 cores."
    )
    with pytest.raises(GatewayClusterError, match=re.escape(refusal)):
        gateway.scale_cluster(name, 2)
    assert len(records_of(site, name)) == 2

    wait_until(
        lambda: records_of(site, name)[-1].cpu_seconds > 0,
        4 * INTERVAL,
        "the cluster's CPU seconds were never read from its cgroups",
    )
    gateway.stop_cluster(name)
    wait_until(
        lambda: all(r.end is not None for r in records_of(site, name)),
        30,
        "the stopped cluster's record stayed open",
    )
    wait_until(
        lambda: not cluster_groups_left(name),
        30,
        "the stopped cluster left cgroups behind (memory, cpu, cpuacct or pids)",
    )

    report = subprocess.run(
        [str(VENV_BIN / "kioskhub"), "usage", "--config", str(site["config"]),
         "--since", time.strftime("%Y-%m-%d", time.gmtime(first.start)), "--format", "csv"],
        capture_output=True, text=True, env=kioskhub_env(), check=True,
    ).stdout  # fmt: skip
    rows = [r for r in csv.DictReader(io.StringIO(report)) if r["server_name"] == name]
    assert [(r["kind"], float(r["cpu_cores"])) for r in rows] == [("dask", 1.0), ("dask", 2.0)]
    assert float(rows[1]["cpu_seconds"]) > 0
