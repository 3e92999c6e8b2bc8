"""Cloud bursting with a real hub: the profile lists [local, openstack]; while this machine has
room a server starts locally, and once its cores are taken the next user's server is asked of
the cloud (Keystone real, Nova and the rest simulated, machines that boot nothing), and the
user is told where it runs and why."""

from __future__ import annotations

import shutil

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.openstack_sim.machines import IdleMachines
from tests.openstack_sim.server import OpenStackSimulation
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration


@pytest.fixture
def bursting_hub(keystone):
    folder = open_folder("bursting")
    write_sample_data(folder / "data")
    with OpenStackSimulation(keystone, IdleMachines(folder)) as cloud:
        cloud.add_flavor("m1.small", 1, 1024, 10)
        cloud.add_image("debian-kioskhub")
        config = write_site_config(
            folder,
            spawner={"backend": "local", "local_cpu": 1, "start_timeout": 60},
            profiles=[
                {"name": "small", "cpu": 1, "memory": "1G", "default": True,
                 "backends": ["local", "openstack"]},
            ],
            openstack={
                **keystone.site_openstack(folder),
                "images": [{"environment": "default", "image": "debian-kioskhub"}],
                "flavors": [{"profile": "small", "flavor": "m1.small"}],
                "boot_timeout": 10,
            },
        )
        hub = start_hub(config, folder / "hub.log")
        try:
            yield hub, cloud
        finally:
            if hub.process.poll() is None:
                hub.stop()
            cloud.delete_everything()
    shutil.rmtree(folder, ignore_errors=True)


def signed_in(hub, name: str) -> UserSession:
    session = UserSession(hub.url, name)
    session.login(SHARED_PASSWORD)
    session.request_token()
    return session


def messages(events: list[dict]) -> list[str]:
    return [event.get("message", "") for event in events]


def test_a_full_machine_sends_the_next_server_to_the_cloud(bursting_hub):
    hub, cloud = bursting_hub
    bob = signed_in(hub, "bob")
    events = bob.spawn({}, timeout=120)
    assert events[-1].get("ready"), (events, hub.log_text()[-3000:])
    # A local start can be ready before the progress stream opens, which then sends only
    # "ready": the home page says where the server runs.
    assert cloud.servers() == []
    assert "· on local" in bob.http.get(f"{hub.url}/hub/home", timeout=30).text

    ada = signed_in(hub, "ada")
    reply = ada.api("/users/ada/server", "POST", json={})
    assert reply.status_code in (201, 202), reply.text
    events = ada.wait_ready(timeout=120)
    assert (
        "Your server runs on a virtual machine in the OpenStack cloud (local: this machine's "
        "servers hold 1 of 1 cores)."
    ) in messages(events)
    # The VM of this cloud never answers: the start fails after the boot timeout, from the VM.
    assert events[-1].get("failed") and "did not start within 10 seconds" in events[-1]["message"]
    created = [p for m, p in cloud.requests if m == "POST" and p.endswith("/servers")]
    assert created == ["/compute/v2.1/servers"]
    assert [v["name"].rsplit("-", 1)[1] for v in cloud.volumes()] == ["ada"]

    bob.stop_server()
    # With bob's cores free again, ada's next server starts on this machine.
    events = ada.spawn({}, timeout=120)
    assert events[-1].get("ready"), events
    assert "· on local" in ada.http.get(f"{hub.url}/hub/home", timeout=30).text
    assert len(cloud.servers()) == 0
    ada.stop_server()
