"""Dask from a podman pod, with no configuration: a user's server is a pod from the site base
image, and ``Gateway().new_cluster()`` in its kernel reaches the gateway the hub runs (its API
and scheduler proxy listen on the host's loopback, which the pod reaches through
slirp4netns), scales to a worker, computes, and shuts the cluster down.

A server in an image of its own (built here FROM the base image, with a package of its own)
gets a cluster whose scheduler and worker are containers of that image, as the user's
account: a task that imports the package runs on the worker, and no container is left.
"""

from __future__ import annotations

import json
import pwd
import shutil
import time
import uuid

import pytest

from kioskhub.hub.dask_gateway import gateway_folder
from kioskhub.hub.schema.config_file import load_site
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import free_port, write_site_config
from tests.support.podman import (
    build_base_image,
    podman,
    podman_hub,
)
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration


PACKAGE = """
MARK = "{mark}"


def answer(x):
    return x * 7 + 1
"""


COPY_INTO_SITE_PACKAGES = (
    "import shutil, sysconfig; "
    "shutil.copy('/tmp/daskpod_probe.py', sysconfig.get_paths()['purelib'])"
)


@pytest.fixture(scope="module")
def package_image():
    """An environment image FROM the site base image with a package of its own,
    ``daskpod_probe``, in its Python's site-packages; only in this machine's storage."""
    base = build_base_image().image
    folder = open_folder("dask-pkg-image")
    mark = uuid.uuid4().hex
    (folder / "daskpod_probe.py").write_text(PACKAGE.format(mark=mark))
    (folder / "Containerfile").write_text(
        f"FROM {base}\n"
        "COPY daskpod_probe.py /tmp/daskpod_probe.py\n"
        "USER root\n"
        f"RUN {json.dumps(['python', '-c', COPY_INTO_SITE_PACKAGES])}\n"
        "USER jovyan\n"
    )
    ref = f"localhost/kioskhub-test/dask-pkg:{mark[:12]}"
    podman("build", "-q", "--network=none", "-t", ref, str(folder))
    shutil.rmtree(folder, ignore_errors=True)
    yield {"image": ref, "mark": mark}
    podman("rmi", "--force", ref, check=False)


@pytest.fixture(scope="module")
def site(package_image):
    build_base_image()
    folder = open_folder("pods-dask")
    config = write_site_config(
        folder,
        spawner={"backend": "podman", "start_timeout": 90},
        environments=[
            {"name": "default", "default": True},
            {"name": "lab-tools", "kind": "image", "image": package_image["image"]},
        ],
        profiles=[{"name": "small", "cpu": 1, "memory": "1Gi", "default": True}],
        data_mounts=[],
        dask={
            "enabled": True,
            "workers": {"worker_cores": 1, "worker_memory": "500M", "max_workers": 2},
            "scheduler": {"cores": 1, "memory": "500M"},
            "ports": {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()},
        },
    )
    leftover = leave_a_container(config)
    with podman_hub(config, folder) as hub:
        yield {"hub": hub, "folder": folder, "leftover": leftover}
    podman("rm", "--force", "--ignore", "--time=0", leftover, check=False)


def leave_a_container(config) -> str:
    """A container labelled as the site's gateway's, as a crashed run leaves one."""
    clusters = gateway_folder(load_site(config)) / "clusters"
    started = podman(
        "run",
        "--detach",
        f"--label=kioskhub.dask-gateway={clusters}",
        build_base_image().image,
        "sleep",
        "600",
    )
    return started.stdout.strip()


NEW_CLUSTER_WITH_A_WORKER = """
from dask_gateway import Gateway

gateway = Gateway()
cluster = gateway.new_cluster()
cluster.scale(1)
client = cluster.get_client()
client.wait_for_workers(1, timeout=120)
"""

SCALE_OUT = (
    """
import json, os, socket
"""
    + NEW_CLUSTER_WITH_A_WORKER
    + """
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
)


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


IN_THE_IMAGE = (
    """
import json, os
import daskpod_probe
"""
    + NEW_CLUSTER_WITH_A_WORKER
    + """
answer = client.submit(daskpod_probe.answer, 6).result()
on_worker = client.submit(lambda: (__import__("daskpod_probe").MARK, os.getuid(),
                                   os.path.exists("/run/.containerenv"))).result()
scheduler_in_container = client.run_on_scheduler(lambda: os.path.exists("/run/.containerenv"))
print("PROBE", json.dumps({
    "answer": answer, "mark": on_worker[0], "uid": on_worker[1], "worker_in_container":
    on_worker[2], "scheduler_in_container": scheduler_in_container, "name": cluster.name,
}))
client.close()
cluster.shutdown()
"""
)


def containers_of(cluster: str) -> list[str]:
    found = podman("ps", "--all", "--quiet", "--filter", f"label=kioskhub.dask-cluster={cluster}")
    return found.stdout.split()


def test_a_pod_in_an_image_of_its_own_gets_workers_of_that_image(site, package_image):
    hub = site["hub"]
    user = signed_in(hub.url, "emmy", SHARED_PASSWORD)
    events = user.spawn({"environment": "lab-tools"}, timeout=150)
    assert events[-1].get("ready"), (events, hub.log_text()[-3000:])

    reply = user.execute(IN_THE_IMAGE, timeout=300)

    assert reply["error"] is None, (reply, hub.log_text()[-3000:])
    probe = json.loads(reply["stdout"].split("PROBE ", 1)[1].splitlines()[0])
    assert probe["answer"] == 43
    assert probe["mark"] == package_image["mark"]
    assert probe["worker_in_container"] and probe["scheduler_in_container"], probe
    assert probe["uid"] == pwd.getpwnam("kh-emmy").pw_uid
    deadline = time.monotonic() + 60
    while containers_of(probe["name"]) and time.monotonic() < deadline:
        time.sleep(1)
    assert containers_of(probe["name"]) == []
    user.stop_server()


def test_the_gateway_removes_the_containers_an_earlier_run_left(site):
    deadline = time.monotonic() + 60
    while podman("container", "exists", site["leftover"], check=False).returncode == 0:
        assert time.monotonic() < deadline, site["hub"].log_text()[-3000:]
        time.sleep(1)
