"""Real VMs for the simulated compute: the KioskHub VM image boots in qemu and runs cloud-init.

Two boots share one image and one volume. The first VM's user-data writes a file, formats
and mounts the blank volume, and starts an HTTP server on a forwarded port, which the host
reads on the VM's own loopback address. The second VM gets the same volume and finds what
the first one wrote; its user-data fails, and the console log's tail shows why.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
import urllib.error
import urllib.request
from importlib.metadata import version

import pytest

from tests.openstack_sim.qemu import QemuMachine, VmRequest
from tests.openstack_sim.vm_fixtures import vm_image_path  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

PORT = 8888
BOOT_TIMEOUT = 300.0
HOME_VOLUME = """\
fs_setup:
  - {label: home, filesystem: ext4, device: /dev/vdb, overwrite: false}
mounts:
  - [/dev/vdb, /home/jovyan, ext4, "defaults,nofail", "0", "2"]
"""
FIRST_USER_DATA = f"""\
#cloud-config
write_files:
  - path: /srv/www/greeting
    content: "hello from the VM\\n"
{HOME_VOLUME}runcmd:
  - [sh, -c, 'echo "written on the first boot" > /home/jovyan/marker']
  - [sh, -c, 'findmnt -n -o SOURCE,FSTYPE /home/jovyan > /srv/www/home-mount']
  - [sh, -c, 'cp /home/jovyan/marker /srv/www/marker']
  - [sh, -c, '/opt/kioskhub/bin/python -m pip list --format=freeze > /srv/www/packages']
  - [sh, -c, 'nohup python3 -m http.server {PORT} -d /srv/www > /var/log/www.log 2>&1 &']
"""
SECOND_USER_DATA = f"""\
#cloud-config
{HOME_VOLUME}runcmd:
  - [sh, -c, 'echo "the volume says: $(cat /home/jovyan/marker)"']
  - [sh, -c, 'echo "the environment is broken: no python9 here" >&2; exit 3']
"""


def free_loopback_address(port: int) -> str:
    """A 127.0.0.x address on which ``port`` is free (x random, so parallel runs differ)."""
    for _ in range(50):
        address = f"127.0.0.{random.randint(10, 250)}"
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        return address
    raise AssertionError(f"no 127.0.0.x address has port {port} free")


async def fetch_when_up(machine: QemuMachine, url: str) -> str:
    """GET ``url`` until it answers, while the VM runs; fails with the console's tail."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline and machine.returncode is None:
        try:
            return await asyncio.to_thread(_get, url)
        except (OSError, urllib.error.URLError):
            await asyncio.sleep(2)
    tail = "\n".join(machine.console_log().splitlines()[-40:])
    raise AssertionError(f"{url} did not answer (qemu exit: {machine.returncode}):\n{tail}")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


async def wait_for_console(machine: QemuMachine, text: str) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while text not in machine.console_log():
        tail = "\n".join(machine.console_log().splitlines()[-40:])
        assert machine.returncode is None, f"the VM stopped ({machine.returncode}):\n{tail}"
        assert time.monotonic() < deadline, f"no {text!r} on the console:\n{tail}"
        await asyncio.sleep(1)


@pytest.mark.timeout(2400)
def test_vm_runs_user_data_and_keeps_its_volume(vm_image_path, tmp_path):  # noqa: F811
    volume = tmp_path / "home.raw"
    with open(volume, "wb") as blank:
        blank.truncate(256 * 2**20)
    address = free_loopback_address(PORT)

    def request(name: str, user_data: str) -> VmRequest:
        return VmRequest(
            name=name, image_path=vm_image_path, user_data=user_data,
            meta_data={"instance-id": f"i-{name}"}, cpus=1, memory_mb=1024, volumes=[volume],
            address=address, forward_ports=[PORT], workdir=tmp_path / name,
        )

    async def first_boot() -> dict[str, str]:
        machine = QemuMachine(request("vm-first", FIRST_USER_DATA))
        await machine.start()
        try:
            seen = {name: await fetch_when_up(machine, f"http://{address}:{PORT}/{name}")
                    for name in ("greeting", "home-mount", "marker", "packages")}
            await wait_for_console(machine, "cloud-init's stages are over")
        finally:
            await machine.stop()
        seen["console"] = machine.console_log()
        seen["exit"] = str(machine.returncode)
        return seen

    first = asyncio.run(first_boot())
    assert first["greeting"] == "hello from the VM\n"
    assert first["home-mount"].split() == ["/dev/vdb", "ext4"]
    assert first["marker"] == "written on the first boot\n"
    installed = dict(line.split("==") for line in first["packages"].split())
    for name in ("jupyterhub", "jupyterlab", "ipykernel"):
        assert installed[name] == version(name), f"the image's {name} is not the hub's"
    assert "Cloud-init v." in first["console"] and "finished at" in first["console"]
    assert "cloud-init modules --mode final: done" in first["console"]
    assert "powering off" in first["console"], "the guest was killed, not shut down"
    assert first["exit"] == "0"

    async def second_boot() -> str:
        machine = QemuMachine(request("vm-second", SECOND_USER_DATA))
        await machine.start()
        try:
            await wait_for_console(machine, "cloud-init's stages are over")
        finally:
            await machine.stop()
        return machine.console_log()

    tail = "\n".join(asyncio.run(second_boot()).splitlines()[-30:])
    assert "the volume says: written on the first boot" in tail
    assert "the environment is broken: no python9 here" in tail
    assert "cloud-init modules --mode final: failed" in tail
