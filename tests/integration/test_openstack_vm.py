"""End to end on a real VM: a hub with ``spawner.backend: openstack`` starts a user's server in
a qemu VM that the simulated Nova boots from KioskHub's Debian image.

cloud-init in the VM runs the user-data the hub rendered: the environment file, the home volume
(formatted on the first boot), jupyterhub-singleuser from the image's /opt/kioskhub, which calls
back to the hub at 10.0.2.2 (the host's loopback as qemu's user network shows it). A kernel
executes code through the proxy; stop deletes the VM and keeps the volume; the next start
reattaches it with the file written before. Two VM boots in all.
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
    secret = folder / "credential-secret"
    secret.write_text(keystone.credential_secret)
    secret.chmod(0o600)
    with OpenStackSimulation(keystone, QemuMachines(folder)) as cloud:
        cloud.add_flavor("m1.lab", 2, 2048, 10)
        cloud.add_image("kioskhub-vm", str(vm_image_path))
        config = write_site_config(
            folder,
            spawner={"backend": "openstack"},
            openstack={
                "application_credential": {
                    "auth_url": keystone.url,
                    "id": keystone.credential_id,
                    "secret_file": str(secret),
                },
                "network": "lab-net",
                "hub_address": "10.0.2.2",
                "images": [{"environment": "default", "image": "kioskhub-vm"}],
                "flavors": [{"profile": "small", "flavor": "m1.lab"}],
                "boot_timeout": BOOT_TIMEOUT,
                "home_volume_size": 1,
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


def start_and_wait(ada: UserSession, hub) -> None:
    events = ada.spawn({"profile": "small"}, timeout=BOOT_TIMEOUT + 60)
    assert events and events[-1].get("ready"), (events, hub.log_text()[-4000:])


def test_a_users_server_runs_in_a_vm_and_its_home_volume_outlives_it(vm_hub):
    hub, cloud = vm_hub
    ada = UserSession(hub.url, "ada")
    ada.login(SHARED_PASSWORD)
    ada.request_token()

    began = time.monotonic()
    start_and_wait(ada, hub)
    first_start = time.monotonic() - began
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

    start_and_wait(ada, hub)
    (second,) = cloud.servers()
    assert second["id"] != server["id"]
    answer = ada.execute("print(open('/home/jovyan/kept.txt').read())", timeout=180)
    assert answer["stdout"].strip() == "written in the first VM", answer
    ada.stop_server(timeout=120)
    assert [v["status"] for v in cloud.volumes()] == ["available"]

    # Accounting: both VMs' records carry the flavor's size, and their APEL cloud records.
    records = usage_store.records(hub.config.parent / "state" / "usage.sqlite")
    assert [(r.username, r.backend, r.cpu_cores, r.memory_requested, r.disk_gb)
            for r in records] == [("ada", "openstack", 2, 2048 * 2**20, 10)] * 2
    assert all(r.end is not None for r in records)
    message = usage_apel.cloud_message(
        records, AccountingSettings(site_name="KIOSK-TEST"), "hub", 0, time.time() + 60
    )
    assert message.count("CpuCount: 2\nMemory: 2048\nDisk: 10\n") == 2
    print(f"first VM start (request to ready): {first_start:.0f} s")
