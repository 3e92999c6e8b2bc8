"""A real Prometheus scrapes a real hub's /hub/metrics with the hub's metrics token, and
every query of the Grafana dashboard runs against it: all parse, and those of the metrics
this hub feeds return data with the labels the panels show."""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from kioskhub.hub.metrics_access import METRICS_TOKEN_FILE
from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_spawn_choices import fake_nvidia_smi
from tests.support.grafana_dashboard import as_promql, dashboard_queries, metric_names
from tests.support.hub_process import free_port, start_hub, write_site_config
from tests.support.prometheus import BUILDER_METRICS, LoopbackPrometheus
from tests.support.user_session import signed_in
from tests.unit.test_dashboard import FED_ELSEWHERE

pytestmark = pytest.mark.integration

NO_DATA_UNTIL_A_BUILD = {
    "kioskhub_environment_builds_total",
    "kioskhub_environment_build_duration_seconds_bucket",
}
"""This hub builds nothing; tests/unit/test_build_metrics.py counts builds."""


@pytest.fixture(scope="module")
def scraped_hub():
    """A hub with a CPU and a GPU profile (a fake nvidia-smi of 4 A100s), and a Prometheus
    scraping it every second."""
    folder = open_folder("metrics")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        spawner={"start_timeout": 30},
        accounting={"update_interval": 5},
        builder={"enabled": True, "port": free_port()},
        groups={"physics": ["oli"]},
        profiles=[
            {"name": "small", "display_name": "Small", "cpu": 1, "memory": "1Gi", "default": True},
            {"name": "a100", "memory": "1Gi", "gpu": {"count": 1, "type": "A100"}},
        ],
    )
    os.environ["KIOSKHUB_TEST_EXTRA_PATH"] = str(fake_nvidia_smi(folder))
    hub = start_hub(config, folder / "hub.log")
    os.environ.pop("KIOSKHUB_TEST_EXTRA_PATH")
    token = (folder / "state" / METRICS_TOKEN_FILE).read_text().strip()
    prometheus = LoopbackPrometheus(folder / "prometheus", hub.url, token)
    try:
        prometheus.start()
        yield {"hub": hub, "prometheus": prometheus, "token": token}
    finally:
        prometheus.stop()
        if hub.process.poll() is None:
            hub.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/hub/metrics", "jupyterhub_running_servers"),
        (BUILDER_METRICS, "kioskhub_environment_builds_queued"),
    ],
)
def test_metrics_are_read_with_read_metrics_only(scraped_hub, path, expected):
    hub, token = scraped_hub["hub"], scraped_hub["token"]
    user = signed_in(hub.url, "mia", SHARED_PASSWORD)

    def get(headers):
        return requests.get(f"{hub.url}{path}", headers=headers, timeout=30)

    anonymous = get({})
    as_user = get({"Authorization": f"token {user.token}"})
    as_prometheus = get({"Authorization": f"Bearer {token}"})
    users = hub.api("/users", token)
    own_server = hub.api("/users/mia/server", token, "POST")

    assert anonymous.status_code == 403
    assert as_user.status_code == 403, "a user without read:metrics read the metrics"
    assert as_prometheus.status_code == 200, as_prometheus.text
    assert expected in as_prometheus.text
    assert users.status_code == 403, "the metrics token listed the users"
    assert own_server.status_code in (403, 404), "the metrics token started a server"


def test_every_dashboard_query_runs_and_the_hubs_own_return_data(scraped_hub):
    hub, prometheus = scraped_hub["hub"], scraped_hub["prometheus"]
    cpu = signed_in(hub.url, "noa", SHARED_PASSWORD)
    gpu = signed_in(hub.url, "oli", SHARED_PASSWORD)
    chooser = signed_in(hub.url, "pia", SHARED_PASSWORD)
    refused = chooser.api("/users/pia/server", "POST", json={"environment": "no-such"})
    assert refused.status_code == 400
    # (JupyterHub counts a refused spawn out of its running servers until the next spawn.)
    assert cpu.spawn({"profile": "small"})[-1]["ready"]
    assert gpu.spawn({"profile": "a100"})[-1]["ready"]

    spawned = prometheus.wait_for(
        'kioskhub_spawns_total{backend="local",profile="small",result="success"} >= 1'
    )
    assert prometheus.wait_for('kioskhub_gpus_allocated{backend="local"} >= 1')
    assert prometheus.wait_for('kioskhub_servers_running{backend="local",profile="a100"} >= 1')
    assert prometheus.wait_for(
        'kioskhub_spawn_refusals_total{backend="local",reason="choice"} >= 1'
    )
    assert prometheus.wait_for("jupyterhub_running_servers >= 2")
    assert prometheus.wait_for('kioskhub_environment_builds_queued{job="kioskhub-environments"}')
    assert prometheus.wait_for(  # oli is in the site's group physics, noa in none
        'kioskhub_usage_gpu_seconds_total{backend="local",profile="a100",group="physics"} > 0'
    )
    assert prometheus.wait_for(
        'kioskhub_usage_cpu_seconds_total{backend="local",profile="small",group="none"} > 0'
    )
    assert prometheus.wait_for('increase(kioskhub_usage_core_seconds_total{group="none"}[1m]) > 0')
    assert spawned[0]["metric"]["job"] == "kioskhub"

    empty = []
    for title, expr in dashboard_queries():
        result = prometheus.query(as_promql(expr))  # PrometheusError if it does not parse
        if not result and not metric_names(expr) & (set(FED_ELSEWHERE) | NO_DATA_UNTIL_A_BUILD):
            empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries of this hub's metrics returned nothing:\n" + "\n".join(
        empty
    )

    cpu.stop_server()
    gpu.stop_server()
    assert prometheus.wait_for('kioskhub_gpus_allocated{backend="local"} == 0')
