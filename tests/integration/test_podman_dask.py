"""Dask from a podman pod, with no configuration: a user's server is a pod from the site base
image, and ``Gateway().new_cluster()`` in its kernel reaches the gateway the hub runs (its API
and scheduler proxy listen on the host's loopback, which the pod reaches through
slirp4netns), scales to a worker, computes, and shuts the cluster down.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import free_port, write_site_config
from tests.support.podman import (
    build_base_image,
    podman_hub,
)
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site():
    build_base_image()
    folder = open_folder("pods-dask")
    config = write_site_config(
        folder,
        spawner={"backend": "podman", "start_timeout": 90},
        profiles=[{"name": "small", "cpu": 1, "memory": "1Gi", "default": True}],
        data_mounts=[],
        dask={
            "enabled": True,
            "workers": {"worker_cores": 1, "worker_memory": "500M", "max_workers": 2},
            "scheduler": {"cores": 1, "memory": "500M"},
            "ports": {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()},
        },
    )
    with podman_hub(config, folder) as hub:
        yield {"hub": hub, "folder": folder}


SCALE_OUT = """
import json, os, socket
from dask_gateway import Gateway

gateway = Gateway()
cluster = gateway.new_cluster()
cluster.scale(1)
client = cluster.get_client()
client.wait_for_workers(1, timeout=120)
total = client.submit(sum, range(101)).result()
workers = len(client.scheduler_info()["workers"])
where = client.run(socket.gethostname)
print("PROBE", json.dumps({
    "address": gateway.address, "total": total, "workers": workers,
    "worker_hosts": sorted(where.values()), "pod": socket.gethostname(),
    "clusters": [c.name for c in gateway.list_clusters()], "name": cluster.name,
}))
client.close()
cluster.shutdown()
print("AFTER", json.dumps([c.name for c in gateway.list_clusters()]))
"""


def test_a_pod_scales_out_with_dask_gateway_and_no_configuration(site):
    hub = site["hub"]
    user = signed_in(hub.url, "lise", SHARED_PASSWORD)
    events = user.spawn(timeout=150)
    assert events[-1].get("ready"), (events, hub.log_text()[-3000:])

    reply = user.execute(SCALE_OUT, timeout=300)

    assert reply["error"] is None, (reply, hub.log_text()[-3000:])
    assert "Mismatched versions" not in reply["stderr"], reply["stderr"]
    probe = json.loads(reply["stdout"].split("PROBE ", 1)[1].splitlines()[0])
    assert probe["address"].startswith("http://10.0.2.2:"), probe
    assert probe["total"] == 5050
    assert probe["workers"] == 1
    assert probe["clusters"] == [probe["name"]]
    after = json.loads(reply["stdout"].split("AFTER ", 1)[1].splitlines()[0])
    assert after == []
    user.stop_server()
