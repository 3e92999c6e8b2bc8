"""The simulated cloud through openstacksdk, signed in at the real Keystone: both ways of
signing in, the catalog, microversions, pagination, status transitions, fault bodies, tokens
Keystone does not know; and a restarted hub's spawner re-adopting a running VM from its state."""

from __future__ import annotations

import asyncio
import base64

import openstack
import pytest
import requests
from openstack import exceptions

from kioskhub.hub.schema.site import Site
from kioskhub.spawner.openstack import OpenStackSpawner
from tests.openstack_sim.machines import IdleMachines
from tests.openstack_sim.server import OpenStackSimulation
from tests.support.kube_cluster import Group, HubUser

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloud(keystone):
    with OpenStackSimulation(keystone, IdleMachines()) as simulation:
        for n in range(5):
            simulation.add_flavor(f"m1.f{n}", n + 1, 1024 * (n + 1), 10)
        simulation.add_image("debian-kioskhub")
        yield simulation


@pytest.mark.parametrize("how", ["password", "application credential"])
def test_both_ways_of_signing_in_find_the_services_in_keystones_catalog(keystone, cloud, how):
    auth = keystone.user_auth() if how == "password" else keystone.credential_auth()
    conn = openstack.connect(**auth)
    assert conn.current_project_id == keystone.project_id
    # Five flavors on pages of two: the client follows the next links.
    assert [f.name for f in conn.compute.flavors()] == [f"m1.f{n}" for n in range(5)]
    assert conn.compute.find_flavor("m1.f3").vcpus == 4
    assert conn.image.find_image("debian-kioskhub") is not None
    assert conn.network.find_network("lab-net").id == "net-1"
    pages = [p for m, p in cloud.requests if p.startswith("/compute/v2.1/flavors")]
    assert len(pages) >= 3


def test_a_token_keystone_does_not_know_is_refused(cloud):
    for token in ("", "gAAAAAforged-token"):
        answer = requests.get(
            f"{cloud.url}/compute/v2.1/servers", headers={"X-Auth-Token": token}, timeout=10
        )
        assert answer.status_code == 401
        assert answer.json()["unauthorized"]["code"] == 401


def test_microversions_are_negotiated_and_answered(keystone, cloud):
    token = openstack.connect(**keystone.credential_auth()).session.get_token()
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.79"}
    answer = requests.get(f"{cloud.url}/compute/v2.1/servers", headers=headers, timeout=10)
    assert answer.headers["OpenStack-API-Version"] == "compute 2.79"
    assert answer.headers["X-OpenStack-Nova-API-Version"] == "2.79"
    headers["OpenStack-API-Version"] = "compute 3.0"
    answer = requests.get(f"{cloud.url}/compute/v2.1/servers", headers=headers, timeout=10)
    assert answer.status_code == 406


def test_servers_go_from_build_to_active_and_volumes_follow_them(keystone, cloud):
    conn = openstack.connect(**keystone.credential_auth())
    volume = conn.block_storage.create_volume(name="kh-test-home-eve", size=1)
    assert volume.status == "creating"
    volume = conn.block_storage.wait_for_status(volume, "available", wait=10, interval=0.1)
    server = conn.compute.create_server(
        name="kh-test-eve",
        flavor_id=conn.compute.find_flavor("m1.f0").id,
        image_id=conn.image.find_image("debian-kioskhub").id,
        networks=[{"uuid": "net-1"}],
        user_data=base64.b64encode(b"#cloud-config\n{}\n").decode(),
        block_device_mapping_v2=[{"boot_index": -1, "uuid": volume.id, "source_type": "volume",
                                  "destination_type": "volume", "delete_on_termination": False}],
    )
    assert conn.compute.get_server(server.id).status == "BUILD"
    server = conn.compute.wait_for_server(server, wait=10, interval=0.1)
    assert server.status == "ACTIVE"
    assert conn.block_storage.get_volume(volume.id).status == "in-use"
    with pytest.raises(exceptions.BadRequestException, match="volume .* is in-use"):
        conn.compute.create_server(
            name="kh-test-mallory", flavor_id=conn.compute.find_flavor("m1.f0").id,
            image_id=conn.image.find_image("debian-kioskhub").id, networks=[{"uuid": "net-1"}],
            block_device_mapping_v2=[{"boot_index": -1, "uuid": volume.id,
                                      "source_type": "volume", "destination_type": "volume"}],
        )
    conn.compute.delete_server(server)
    assert conn.block_storage.get_volume(volume.id).status == "available"
    with pytest.raises(exceptions.NotFoundException, match="could not be found"):
        conn.compute.get_server(server.id)
    conn.block_storage.delete_volume(volume)


def test_a_restarted_hubs_spawner_readopts_the_vm_from_its_state_and_stop_keeps_the_volume(
    keystone, cloud, tmp_path
):
    """The state (server id, volume id, address) alone lets a new spawner poll and stop the VM."""
    conn = openstack.connect(**keystone.credential_auth())
    volume = conn.block_storage.create_volume(name="kh-test-home-ada", size=1)
    volume = conn.block_storage.wait_for_status(volume, "available", wait=10, interval=0.1)
    server = conn.compute.create_server(
        name="kh-test-ada", flavor_id=conn.compute.find_flavor("m1.f0").id,
        image_id=conn.image.find_image("debian-kioskhub").id, networks=[{"uuid": "net-1"}],
        block_device_mapping_v2=[{"boot_index": -1, "uuid": volume.id, "source_type": "volume",
                                  "destination_type": "volume", "delete_on_termination": False}],
    )
    conn.compute.wait_for_server(server, wait=10, interval=0.1)
    secret = tmp_path / "secret"
    secret.write_text(keystone.credential_secret)
    site = Site.model_validate({
        "hub": {"state_dir": str(tmp_path / "state")},
        "home": {"root": str(tmp_path / "homes")},
        "spawner": {"backend": "openstack"},
        "pods": {"image": "localhost:5000/kioskhub/base:1"},
        "openstack": {
            "application_credential": {"auth_url": keystone.url, "id": keystone.credential_id,
                                       "secret_file": str(secret)},
            "hub_address": "10.0.2.2", "image": "debian-kioskhub",
            "flavors": [{"profile": "small", "flavor": "m1.f0"}],
        },
    })
    state = {"kioskhub": {"version": 1, "gpus": "", "summary": "Python 3 · Small", "launch": {
        "server_id": server.id, "volume_id": volume.id, "address": "127.0.0.30",
        "flavor": "m1.f0"}}}

    async def readopt_and_stop():
        spawner = OpenStackSpawner(user=HubUser("ada", [Group("physics")]), site=site)
        spawner.load_state(state)
        assert spawner.server_address() == ("127.0.0.30", 8888)
        assert spawner.get_state()["kioskhub"]["launch"]["server_id"] == server.id
        running = await spawner.poll()
        await spawner.stop()
        return running, await spawner.poll()

    assert asyncio.run(readopt_and_stop()) == (None, 0)
    assert conn.compute.find_server(server.id, ignore_missing=True) is None
    assert conn.block_storage.get_volume(volume.id).status == "available"
    conn.block_storage.delete_volume(volume)
