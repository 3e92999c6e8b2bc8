"""End to end on a real VM, by bursting: a hub whose profile lists ``backends: [local,
openstack]``, with room for one server on this machine (``spawner.local_cpu: 1``). A first user's
server fills the machine; the next user's server goes to a qemu VM that the simulated Nova boots
from KioskHub's Debian image, and the user is told it runs there and why.

cloud-init in the VM runs the user-data the hub rendered: the environment file, the home volume
(formatted on the first boot), jupyterhub-singleuser from the image's /opt/kioskhub, which calls
back to the hub at 10.0.2.2 (the host's loopback as qemu's user network shows it). A kernel
executes code through the proxy; stop deletes the VM and keeps the volume; the next start (the
machine still full, so it bursts again) reattaches it with the file written before. Two VM boots
in all.
"""

from __future__ import annotations

import shutil
import time

import pytest

from kioskhub.hub import usage_apel
from kioskhub.hub.sample_data import write_sample_data
from kioskhub.hub.schema.accounting import AccountingSettings
from kioskhub.spawner import usage_store
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.openstack_sim.machines import QemuMachines
from tests.openstack_sim.server import OpenStackSimulation
from tests.openstack_sim.vm_fixtures import vm_image_path  # noqa: F401 (a fixture)
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

BOOT_TIMEOUT = 480


@pytest.fixture
def vm_hub(keystone, vm_image_path):  # noqa: F811
    folder = open_folder("openstack-vm")
    write_sample_data(folder / "data")
    with OpenStackSimulation(keystone, QemuMachines(folder)) as cloud:
        cloud.add_flavor("m1.lab", 2, 2048, 10)
        cloud.add_image("kioskhub-vm", str(vm_image_path))
        config = write_site_config(
            folder,
            spawner={"backend": "local", "local_cpu": 1, "start_timeout": 60},
            profiles=[
                {"name": "small", "cpu": 1, "memory": "2G", "default": True,
                 "backends": ["local", "openstack"]},
            ],
            openstack={
                **keystone.site_openstack(folder),
                "images": [{"environment": "default", "image": "kioskhub-vm"}],
                "flavors": [{"profile": "small", "flavor": "m1.lab"}],
                "boot_timeout": BOOT_TIMEOUT,
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


BURST = (
    "Your server runs on a virtual machine in the OpenStack cloud (local: this machine's "
    "servers hold 1 of 1 cores)."
)


def signed_in(hub, name: str) -> UserSession:
    session = UserSession(hub.url, name)
    session.login(SHARED_PASSWORD)
    session.request_token()
    return session


def messages(events: list[dict]) -> list[str]:
    return [event.get("message", "") for event in events]


def home_page(user: UserSession, hub) -> str:
    return user.http.get(f"{hub.url}/hub/home", timeout=30).text


def start_and_wait(ada: UserSession, hub) -> list[dict]:
    events = ada.spawn({"profile": "small"}, timeout=BOOT_TIMEOUT + 60)
    assert events and events[-1].get("ready"), (events, hub.log_text()[-4000:])
    return events


@pytest.mark.timeout(2 * BOOT_TIMEOUT + 600)
def test_a_full_machine_bursts_to_a_vm_whose_home_volume_outlives_it(vm_hub):
    hub, cloud = vm_hub
    bob = signed_in(hub, "bob")
    events = bob.spawn({}, timeout=120)
    assert events[-1].get("ready"), (events, hub.log_text()[-3000:])
    # A local start can be ready before the progress stream opens, which then sends only
    # "ready": the home page says where the server runs.
    assert cloud.servers() == []
    assert "· on local" in home_page(bob, hub)

    ada = signed_in(hub, "ada")
    began = time.monotonic()
    events = start_and_wait(ada, hub)
    first_start = time.monotonic() - began
    assert BURST in messages(events), messages(events)
    assert "· on openstack" in home_page(ada, hub)
    (server,) = cloud.servers()
    assert server["status"] == "ACTIVE"
    answer = ada.execute(
        "import os, socket\n"
        "print(socket.gethostname(), os.getuid(), os.getcwd())\n"
        "open(os.path.expanduser('~/kept.txt'), 'w').write('written in the first VM')\n",
        timeout=180,
    )
    assert answer["error"] is None, answer
    assert answer["stdout"].split() == ["kioskhub-server", "1000", "/home/jovyan"]

    ada.stop_server(timeout=120)
    assert cloud.servers() == []
    (volume,) = [v for v in cloud.volumes() if v["name"].endswith("-home-ada")]
    assert volume["status"] == "available"

    # bob's server still holds this machine's core: the second start bursts again.
    events = start_and_wait(ada, hub)
    assert BURST in messages(events), messages(events)
    (second,) = cloud.servers()
    assert second["id"] != server["id"]
    answer = ada.execute("print(open('/home/jovyan/kept.txt').read())", timeout=180)
    assert answer["stdout"].strip() == "written in the first VM", answer
    ada.stop_server(timeout=120)
    assert [v["status"] for v in cloud.volumes()] == ["available"]
    bob.stop_server()

    # Accounting: bob's local record, and both VMs' records with the flavor's size and their
    # APEL cloud records.
    records = usage_store.records(hub.config.parent / "state" / "usage.sqlite")
    assert [(r.username, r.backend, r.cpu_cores) for r in records if r.username == "bob"] == [
        ("bob", "local", 1)
    ]
    records = [r for r in records if r.username == "ada"]
    assert [(r.username, r.backend, r.cpu_cores, r.memory_requested, r.disk_gb)
            for r in records] == [("ada", "openstack", 2, 2048 * 2**20, 10)] * 2
    assert all(r.end is not None for r in records)
    message = usage_apel.cloud_message(
        records, AccountingSettings(site_name="KIOSK-TEST"), "hub", 0, time.time() + 60
    )
    assert message.count("CpuCount: 2\nMemory: 2048\nDisk: 10\n") == 2
    print(f"first VM start (request to ready): {first_start:.0f} s")
