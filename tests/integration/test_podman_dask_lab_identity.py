"""A Dask cluster of an image, on the podman backend, for a user with a lab identity
(``auth.identity.source: nss``): its scheduler and worker containers run as the uid, gid
and supplementary groups of the user's pod (``--user``, ``--group-add``), not a kh- account.
"""

from __future__ import annotations

import pwd

import pytest

from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import free_port, write_site_config
from tests.support.lab_accounts import cluster_probe, lab_directory
from tests.support.podman import build_base_image, podman_hub
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    with lab_directory(members=("ada",), others=()) as directory:
        yield directory


@pytest.fixture(scope="module")
def site(lab):
    image = build_base_image().image
    folder = open_folder("pods-dask-identity")
    config = write_site_config(
        folder,
        auth={
            "shared_password": SHARED_PASSWORD,
            "identity": {"source": "nss", "trust_shared_password": True},
        },
        spawner={"backend": "podman", "start_timeout": 90},
        environments=[
            {"name": "default", "default": True},
            {"name": "lab-image", "kind": "image", "image": image},
        ],
        profiles=[{"name": "small", "cpu": 1, "memory": "1Gi", "default": True}],
        data_mounts=[],
        dask={
            "enabled": True,
            "workers": {"worker_cores": 1, "worker_memory": "500M", "max_workers": 1},
            "scheduler": {"cores": 1, "memory": "500M"},
            "ports": {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()},
        },
    )
    with podman_hub(config, folder) as hub:
        yield {"hub": hub, "folder": folder}


def test_an_image_clusters_containers_run_as_the_pods_lab_identity(site, lab):
    account = lab.accounts["ada"]
    user = signed_in(site["hub"].url, account.name, SHARED_PASSWORD)
    events = user.spawn({"environment": "lab-image"}, timeout=150)
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])

    probe = cluster_probe(user, "/nonexistent", site["hub"])

    assert (probe["kernel"]["uid"], probe["kernel"]["gid"]) == (account.uid, account.gid)
    assert lab.gid in probe["kernel"]["groups"]
    assert len(probe["workers"]) == 1
    for process in (*probe["workers"], probe["scheduler"]):
        assert process["in_container"], probe
        assert (process["uid"], process["gid"]) == (account.uid, account.gid), probe
        assert lab.gid in process["groups"], probe
    with pytest.raises(KeyError):
        pwd.getpwnam(f"kh-{account.name}")
    user.stop_server()
