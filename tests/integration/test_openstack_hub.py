"""A real hub with ``spawner.backend: openstack``, signed in to a real Keystone with an
application credential, against the simulated Nova, Neutron, Glance and Cinder.

The machines here boot nothing (``tests/openstack_sim/machines.py``): these tests follow what
the hub asks of the cloud and what a user sees when the cloud says no: a quota, no valid host,
an image that is not there, a VM stuck in BUILD, and a server that failed inside its VM. The
home volume is made once and outlives the VMs.
"""

from __future__ import annotations

import base64
import shlex
import shutil
import time

import pytest
import yaml

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner.podman_plan import hub_tag
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.openstack_sim.machines import IdleMachines, NeverBootsMachines, ServiceFailsMachines
from tests.openstack_sim.server import OpenStackSimulation
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

CONTAINER_IMAGE = "localhost:5000/kioskhub/base:1"


@pytest.fixture(scope="module")
def openstack_hub(keystone):
    folder = open_folder("openstack")
    write_sample_data(folder / "data")
    with OpenStackSimulation(keystone, IdleMachines(folder)) as cloud:
        cloud.add_flavor("m1.small", 1, 2048, 10)
        cloud.add_flavor("m1.medium", 2, 4096, 20)
        cloud.add_flavor("g1.huge", 64, 262144, 100)  # bigger than any host
        cloud.add_image("debian-kioskhub")
        config = write_site_config(
            folder,
            spawner={"backend": "openstack", "start_timeout": 20, "http_timeout": 10},
            environments=[
                {"name": "default", "display_name": "Python 3", "default": True},
                {"name": "legacy", "kind": "image", "image": "localhost:5000/envs/legacy:1"},
            ],
            profiles=[
                {"name": "small", "cpu": 1, "memory": "2G", "default": True},
                {"name": "medium", "cpu": 2, "memory": "4G"},
                {"name": "huge", "cpu": 64, "memory": "256G"},
            ],
            pods={"image": CONTAINER_IMAGE},
            openstack={
                **keystone.site_openstack(folder),
                "image": "debian-kioskhub",
                "images": [{"environment": "legacy", "image": "centos-7-legacy"}],
                "flavors": [
                    {"profile": "small", "flavor": "m1.small"},
                    {"profile": "medium", "flavor": "m1.medium"},
                    {"profile": "huge", "flavor": "g1.huge"},
                ],
                "boot_timeout": 10,
            },
        )
        hub = start_hub(config, folder / "hub.log")
        yield hub, cloud
        if hub.process.poll() is None:
            hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def user(openstack_hub):
    """A signed-in user with an API token; the cloud's machines reset to idle ones."""
    hub, cloud = openstack_hub
    cloud.call(setattr, cloud.cloud, "driver", IdleMachines())
    cloud.set_quota(instances=10, cores=200, ram=10**6, volumes=10, gigabytes=1000)
    session = UserSession(hub.url, "ada")
    session.login(SHARED_PASSWORD)
    session.request_token()
    yield session
    if session.api("/users/ada").json()["servers"]:
        session.stop_server()


def failure(session: UserSession, options: dict) -> str:
    """Start a server with ``options``; the message the user sees: the refusal of a start
    that fails at once, else the failure its progress (the spawn page) ends with."""
    reply = session.api("/users/ada/server", "POST", json=options)
    if reply.status_code >= 400:
        message = reply.json()["message"]
    else:
        events = session.wait_ready(timeout=90)
        assert events and events[-1].get("failed"), events
        message = events[-1]["message"]
    deadline = time.monotonic() + 30
    while session.api("/users/ada").json()["servers"]:
        assert time.monotonic() < deadline, "the failed server was not cleaned up"
        time.sleep(0.5)
    return message


def test_a_vm_gets_flavor_volume_and_user_data_and_is_deleted_keeping_the_volume(
    openstack_hub, user
):
    """The VM boots but its server never answers: the start times out with the console's
    last lines, the VM is deleted, the home volume stays. What the hub asked of the cloud:
    the flavor, the volume attached (kept on delete), user-data that runs the environment's
    container with the hub's API at the address VMs reach, and a security group admitting
    only the hub to the server's port."""
    hub, cloud = openstack_hub
    captured = {}
    original = cloud.cloud.create_server

    def capture(project_id, request):
        captured["request"] = request
        return original(project_id, request)

    cloud.call(setattr, cloud.cloud, "create_server", capture)
    try:
        message = failure(user, {"profile": "small"})
    finally:
        cloud.call(delattr, cloud.cloud, "create_server")
    assert "Your server did not start within 10 seconds of the VM's request" in message
    assert "Cloud-init v. 22.4.2 finished" in message  # the console's last lines

    assert cloud.servers() == []
    volumes = [v for v in cloud.volumes() if v["name"].endswith("-home-ada")]
    assert len(volumes) == 1 and volumes[0]["status"] == "available", volumes
    assert volumes[0]["metadata"] == {"kioskhub-user": "ada"}
    volume = volumes[0]

    request = captured["request"]
    assert request["flavorRef"] == next(
        f.id for f in cloud.cloud.flavors.values() if f.name == "m1.small"
    )
    assert request["block_device_mapping_v2"][1] == {
        "boot_index": -1,
        "uuid": volume["id"],
        "source_type": "volume",
        "destination_type": "volume",
        "delete_on_termination": False,
    }
    user_data = yaml.safe_load(base64.b64decode(request["user_data"]))
    env_file, home, start = user_data["write_files"]
    assert env_file["path"] == "/etc/kioskhub/server.env"
    assert env_file["permissions"] == "0600"
    env = dict(line.split("=", 1) for line in env_file["content"].splitlines())
    env = {key: shlex.split(value)[0] if value else "" for key, value in env.items()}
    assert env["JUPYTERHUB_API_URL"].startswith("http://10.0.2.2:")
    assert env["JUPYTERHUB_USER"] == "ada"
    assert len(env["JUPYTERHUB_API_TOKEN"]) > 20
    assert f" {CONTAINER_IMAGE} jupyterhub-singleuser" in start["content"]
    assert f"device=/dev/disk/by-id/virtio-{volume['id'][:20]}\n" in home["content"]

    (group,) = [g for g in cloud.security_groups() if g["name"] == "kioskhub-servers"]
    ingress = [r for r in group["security_group_rules"] if r["direction"] == "ingress"]
    assert [
        (r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"])
        for r in ingress
    ] == [("tcp", 8888, 8888, "10.0.2.2/32")]

    # The next start reattaches the same volume to a new VM.
    failure(user, {"profile": "small"})
    assert [v["id"] for v in cloud.volumes() if v["name"].endswith("-home-ada")] == [volume["id"]]


def test_no_valid_host_is_told_with_novas_fault(openstack_hub, user):
    message = failure(user, {"profile": "huge"})
    assert "The cloud has no room for a g1.huge VM right now" in message
    assert "No valid host was found" in message


def test_an_image_that_glance_lacks_is_named(openstack_hub, user):
    _, cloud = openstack_hub
    before = len(cloud.requests)
    message = failure(user, {"environment": "legacy"})
    assert "The image 'centos-7-legacy' was not found in the cloud." in message
    assert ("GET", "/image/v2/images") in cloud.requests[before:]
    assert not any(m == "POST" and p.endswith("/servers") for m, p in cloud.requests[before:])


def test_an_exhausted_compute_quota_is_told_with_the_clouds_reason(openstack_hub, user):
    _, cloud = openstack_hub
    cloud.set_quota(cores=1)
    message = failure(user, {"profile": "medium"})
    assert "The cloud's quota is exhausted, so no VM could be made" in message
    assert "Quota exceeded for cores: Requested 2, but already used 0 of 1 cores" in message


def test_a_vm_stuck_in_build_is_deleted_after_the_boot_timeout(openstack_hub, user):
    _, cloud = openstack_hub
    cloud.call(setattr, cloud.cloud, "driver", NeverBootsMachines())
    message = failure(user, {"profile": "small"})
    assert "still being built (status BUILD) after 10 s, so it was deleted" in message
    assert cloud.servers() == []


def test_a_server_that_fails_in_its_vm_shows_the_consoles_last_lines(openstack_hub, user):
    _, cloud = openstack_hub
    cloud.call(setattr, cloud.cloud, "driver", ServiceFailsMachines())
    message = failure(user, {"profile": "small"})
    assert "Your server failed to start in its VM" in message
    assert "manifest unknown" in message
    assert cloud.servers() == []


def test_another_users_home_volume_is_never_attached(openstack_hub, user):
    """bob's volume (and one whose name merely starts like ada's) stay untouched: ada's VM gets
    the volume of her own name, made for her."""
    hub, cloud = openstack_hub
    tag = hub_tag((hub.config.parent / "state").resolve())
    for name in (f"kh-{tag}-home-bob", f"kh-{tag}-home-ada-x"):
        cloud.call(cloud.cloud.create_volume, "someone", {"name": name, "size": 1})
    before = {v["name"]: v["id"] for v in cloud.volumes()}
    captured = {}
    original = cloud.cloud.create_server

    def capture(project_id, request):
        captured["request"] = request
        return original(project_id, request)

    cloud.call(setattr, cloud.cloud, "create_server", capture)
    try:
        failure(user, {"profile": "small"})
    finally:
        cloud.call(delattr, cloud.cloud, "create_server")
    attached = captured["request"]["block_device_mapping_v2"][1]["uuid"]
    names = {v["id"]: v["name"] for v in cloud.volumes()}
    assert names[attached] == f"kh-{tag}-home-ada"
    assert attached not in (before[f"kh-{tag}-home-bob"], before[f"kh-{tag}-home-ada-x"])
    assert all(v["status"] == "available" for v in cloud.volumes())
