"""A cluster of a server's image runs as podman containers of that image (on the podman
backend): the resolver's choice, the commands, podman's arguments and the environment."""

from __future__ import annotations

import asyncio

from dask_gateway_server.models import User

from kioskhub.hub.dask_cluster_containers import (
    ContainerProcess,
    container_env,
    run_arguments,
)
from kioskhub.hub.dask_cluster_environments import ClusterEnvironment, ClusterEnvironments
from kioskhub.hub.dask_gateway_backend import KioskLocalBackend, KioskSharedLocalBackend
from kioskhub.hub.schema.site import Site
from tests.unit.test_dask_cluster_environments import PROFILE, make_site, resolve


def on_podman(site: Site) -> Site:
    return site.model_copy(
        update={"spawner": site.spawner.model_copy(update={"backend": "podman"})}
    )


def test_on_the_podman_backend_a_server_in_an_image_gets_clusters_of_that_image(tmp_path):
    environments = ClusterEnvironments(on_podman(make_site(tmp_path)))

    assert resolve(environments, "bob", "lab-image") == ClusterEnvironment(
        "lab-image", image="registry.example/lab:1"
    )


def image_cluster_config(backend_class, tmp_path):
    """The config of bob's new cluster in ``lab-image`` on a podman site, by ``backend_class``."""
    backend = backend_class(profiles=[PROFILE], default_profile="small")
    backend.environments = ClusterEnvironments(on_podman(make_site(tmp_path)))
    _options, config = asyncio.run(
        backend.process_cluster_options(User("bob"), {"environment": "lab-image"})
    )
    return config


def test_the_local_backend_runs_an_image_clusters_in_containers_of_the_image(tmp_path):
    config = image_cluster_config(KioskLocalBackend, tmp_path)

    assert config.environment_image == "registry.example/lab:1"
    assert config.environment_prefix == ""
    assert config.scheduler_cmd == [
        "python",
        "-m",
        "dask",
        "scheduler",
        "--preload",
        "/opt/kioskhub-gateway/dask_dashboard_guard.py",
    ]
    assert config.worker_cmd == ["python", "-m", "dask", "worker"]


def test_a_gateway_that_cannot_run_containers_keeps_kiosk_hubs_own_environment(tmp_path):
    config = image_cluster_config(KioskSharedLocalBackend, tmp_path)

    assert config.environment_image == ""
    assert config.scheduler_cmd == ["dask-scheduler"]


def test_a_container_gets_the_processs_environment_without_the_hosts_python():
    env = {
        "DASK_GATEWAY_API_TOKEN": "secret",
        "DASK_GATEWAY_CLUSTER_NAME": "c1",
        "PATH": "/opt/kioskhub/bin:/usr/bin",
        "VIRTUAL_ENV": "/opt/kioskhub",
        "PYTHONPATH": "/x",
        "HOME": "/home/bob",
        "USER": "kh-bob",
    }

    assert container_env(env) == {
        "DASK_GATEWAY_API_TOKEN": "secret",
        "DASK_GATEWAY_CLUSTER_NAME": "c1",
        "USER": "kh-bob",
        "HOME": "/tmp",
    }


def test_podmans_arguments_for_a_worker_hold_no_token():
    worker = ContainerProcess(
        gateway="/var/lib/kioskhub/dask-gateway/clusters",
        cluster="abc123",
        process="worker-w1",
        image="localhost:5000/lab/env@sha256:00ff",
        command=("python", "-m", "dask", "worker", "tls://127.0.0.1:4000", "--no-dashboard"),
        env=(("DASK_GATEWAY_API_TOKEN", "secret"), ("HOME", "/tmp")),
        uid=1234,
        gid=1234,
        workdir="/var/lib/kioskhub/dask-gateway/clusters/abc123",
        guard="/srv/kioskhub/hub/dask_dashboard_guard.py",
        memory=500_000_000,
        cores=1.5,
        pids=512,
    )

    assert run_arguments(worker) == [
        "run",
        "--detach",
        "--pull=never",
        "--name=dask-abc123-worker-w1",
        "--label=kioskhub.dask-gateway=/var/lib/kioskhub/dask-gateway/clusters",
        "--label=kioskhub.dask-cluster=abc123",
        "--label=kioskhub.dask-process=worker-w1",
        "--network=host",
        "--user=1234:1234",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--memory=500000000",
        "--memory-swap=500000000",
        "--cpus=1.5",
        "--pids-limit=512",
        "--volume=/var/lib/kioskhub/dask-gateway/clusters/abc123:"
        "/var/lib/kioskhub/dask-gateway/clusters/abc123:ro",
        "--volume=/srv/kioskhub/hub/dask_dashboard_guard.py:"
        "/opt/kioskhub-gateway/dask_dashboard_guard.py:ro",
        "--workdir=/tmp",
        "--env=DASK_GATEWAY_API_TOKEN",
        "--env=HOME=/tmp",
        "--",
        "localhost:5000/lab/env@sha256:00ff",
        "python",
        "-m",
        "dask",
        "worker",
        "tls://127.0.0.1:4000",
        "--no-dashboard",
    ]
