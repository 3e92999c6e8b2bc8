"""Dask clusters of users with a lab identity (``auth.identity.source: nss``) run as exactly
the identity their server runs as, on a real hub with its Dask Gateway.

Three accounts of the lab's directory (useradd, uids ≥ 40000) sign in with the shared
password; the central data folder is root:<lab group> 0750. ada (in the lab group) and
bob (not) each start a cluster from their server's kernel: its scheduler and worker run
as their uid, gid and groups, so only ada's worker reads the data. cy, who has never
started a server, is told to start one first. No kh- account is made for anyone.
"""

from __future__ import annotations

import json
import pwd
import shutil

import pytest
from dask_gateway import Gateway, JupyterHubAuth

from kioskhub.hub.dask_cluster_accounts import NO_RECORD
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import free_port, start_hub, write_site_config
from tests.support.lab_accounts import cluster_probe, group_data_folder, lab_directory
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    with lab_directory(members=("ada",), others=("bob", "cy")) as directory:
        yield directory


@pytest.fixture(scope="module")
def site(lab):
    folder = open_folder("dask-identity")
    data = group_data_folder(folder / "central" / "beamline", lab.gid)
    ports = {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()}
    config = write_site_config(
        folder,
        auth={
            "shared_password": SHARED_PASSWORD,
            "identity": {"source": "nss", "trust_shared_password": True},
        },
        data_mounts=[],
        profiles=[{"name": "small", "cpu": 1, "memory": "1Gi", "default": True}],
        dask={
            "enabled": True,
            "workers": {"worker_cores": 1, "worker_memory": "500M", "max_workers": 1},
            "scheduler": {"cores": 1, "memory": "500M"},
            "ports": ports,
        },
    )
    hub = start_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder, "data": data}
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def cluster_seen_by(site, account) -> dict:
    """What the scheduler and worker of a cluster that ``account`` starts from a kernel of
    their server see: ids, USER, HOME and the data file (or the error reading it)."""
    user = signed_in(site["hub"].url, account.name, SHARED_PASSWORD)
    events = user.spawn()
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])
    return cluster_probe(user, str(site["data"]), site["hub"])


def test_a_cluster_runs_as_its_users_lab_identity_and_the_data_decides(site, lab):
    ada, bob = lab.accounts["ada"], lab.accounts["bob"]
    seen_ada, seen_bob = cluster_seen_by(site, ada), cluster_seen_by(site, bob)

    for seen, account in ((seen_ada, ada), (seen_bob, bob)):
        assert len(seen["workers"]) == 1
        for process in (*seen["workers"], seen["scheduler"]):
            assert (process["uid"], process["gid"]) == (account.uid, account.gid)
            assert process["user"] == account.name
            assert process["home"] == str(site["folder"] / "homes" / account.name)
    for process in (*seen_ada["workers"], seen_ada["scheduler"]):
        assert lab.gid in process["groups"]
        assert process["data"] == "beam current 42 mA\n"
    for process in (*seen_bob["workers"], seen_bob["scheduler"]):
        assert lab.gid not in process["groups"]
        assert process["data"] == "PermissionError"
    for account in (ada, bob):
        with pytest.raises(KeyError):
            pwd.getpwnam(f"kh-{account.name}")


def test_a_user_without_a_started_server_is_told_to_start_it(site, lab):
    account = lab.accounts["cy"]
    user = signed_in(site["hub"].url, account.name, SHARED_PASSWORD)
    config_file = site["folder"] / "state" / "dask-gateway" / "dask_gateway_config.json"
    proxy = json.loads(config_file.read_text())["Proxy"]["tcp_address"]
    gateway = Gateway(
        address=f"{site['hub'].url}/services/dask-gateway",
        proxy_address=f"gateway://{proxy}",
        auth=JupyterHubAuth(api_token=user.token),
    )

    with pytest.raises(ValueError) as refused:  # the client closes itself when collected
        gateway.submit()
    assert str(refused.value) == NO_RECORD
    assert not (site["folder"] / "state" / "identities" / f"{account.name}.json").exists()
