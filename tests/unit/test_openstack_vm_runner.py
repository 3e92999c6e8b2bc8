"""The VM runner's pure parts: qemu's command line, the NoCloud seed, checks of a request."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from tests.openstack_sim.qemu import (
    SeedServer,
    VmError,
    VmRequest,
    check_request,
    kernel_command_line,
    qemu_argv,
    seed_documents,
    volume_serial,
)
from tests.openstack_sim.vm_image import (
    ImageBuildError,
    VmImageRecipe,
    module_load_order,
    newc_archive,
)


def make_request(tmp_path: Path, **changes) -> VmRequest:
    image = tmp_path / "disk.raw"
    image.write_bytes(b"")
    volume = tmp_path / "home.raw"
    volume.write_bytes(b"")
    fields = dict(
        name="kh-ada-1", image_path=image, user_data="#cloud-config\n", meta_data={},
        cpus=2, memory_mb=2048, volumes=[volume], address="127.0.0.7", forward_ports=[8888],
        workdir=tmp_path / "vm",
    )
    fields.update(changes)
    return VmRequest(**fields)


def test_qemu_command_line(tmp_path):
    request = make_request(tmp_path)
    argv = qemu_argv(
        request, accelerator="tcg", kernel=Path("/vm/vmlinuz"), initrd=Path("/vm/initrd.img"),
        root_disk=Path("/vm/root.qcow2"), console=Path("/vm/console.log"),
        seed_url="http://10.0.2.2:4242/s3cret/",
    )
    assert argv == [
        "qemu-system-x86_64", "-name", "guest=kh-ada-1", "-nodefaults", "-no-user-config",
        "-no-reboot", "-display", "none", "-accel", "tcg,thread=multi", "-cpu", "max",
        "-smp", "2", "-m", "2048", "-kernel", "/vm/vmlinuz", "-initrd", "/vm/initrd.img",
        "-append",
        "console=ttyS0 quiet net.ifnames=0 panic=1 ds=nocloud-net;s=http://10.0.2.2:4242/s3cret/",
        "-drive", "file=/vm/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        "-device", "virtio-blk-pci,drive=root",
        "-drive", f"file={tmp_path}/home.raw,if=none,id=volume1,format=raw",
        "-device", "virtio-blk-pci,drive=volume1,serial=home",
        "-netdev",
        "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.7:8888-:8888",
        "-device", "virtio-net-pci,netdev=net0", "-device", "virtio-rng-pci",
        "-chardev", "file,id=console,path=/vm/console.log", "-serial", "chardev:console",
        "-monitor", "stdio",
    ]


def test_kvm_uses_the_host_cpu(tmp_path):
    argv = qemu_argv(make_request(tmp_path), accelerator="kvm", kernel=Path("k"),
                     initrd=Path("i"), root_disk=Path("r"), console=Path("c"), seed_url="u")
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "host"


def test_volume_serials_are_safe_names():
    volume = Path("/v/0b3e6f2a-8c1d-4e5f-9a7b-1234567890ab.raw")
    assert volume_serial(volume) == "0b3e6f2a-8c1d-4e5f-9"
    assert volume_serial(Path("/v/a,file=x.qcow2")) == "a-file-x"


def test_commas_in_paths_cannot_add_drive_options(tmp_path):
    volume = tmp_path / "v,snapshot=on,file=x.raw"
    volume.write_bytes(b"")
    argv = qemu_argv(make_request(tmp_path, volumes=[volume]), accelerator="tcg",
                     kernel=Path("k"), initrd=Path("i"), root_disk=Path("/r,format=raw"),
                     console=Path("/c,x"), seed_url="u")
    assert f"file={tmp_path}/v,,snapshot=on,,file=x.raw,if=none,id=volume1,format=raw" in argv
    assert "file=/r,,format=raw,if=none,id=root,format=qcow2,cache=unsafe,discard=unmap" in argv
    assert "file,id=console,path=/c,,x" in argv


def test_seed_documents(tmp_path):
    request = make_request(tmp_path, meta_data={"instance-id": "i-0001", "public-keys": []})
    documents = seed_documents(request)
    assert documents["user-data"] == b"#cloud-config\n"
    assert json.loads(documents["meta-data"]) == {
        "instance-id": "i-0001", "local-hostname": "kh-ada-1", "public-keys": [],
    }
    assert documents["vendor-data"] == b""
    assert kernel_command_line("http://10.0.2.2:1/x/").endswith(" ds=nocloud-net;s=http://10.0.2.2:1/x/")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "a;reboot"}, "VM name 'a;reboot'"),
        ({"name": "../x"}, "VM name '../x'"),
        ({"name": "x,file=/etc/shadow"}, "VM name"),
        ({"address": "0.0.0.0"}, "not a loopback address"),
        ({"address": "10.0.0.1"}, "not a loopback address"),
        ({"address": "127.0.0.1,hostfwd=tcp::22-:22"}, "is not an IPv4 address"),
        ({"forward_ports": [0]}, "forwarded port 0"),
        ({"forward_ports": ["22-:22"]}, "forwarded port '22-:22'"),
        ({"volumes": [Path("/nonexistent/vol.raw")]}, "volume /nonexistent/vol.raw does not"),
        ({"memory_mb": 16}, "at least 1 CPU and 256 MB"),
    ],
)
def test_bad_requests_are_refused_by_name(tmp_path, changes, message):
    with pytest.raises(VmError, match=None) as refused:
        check_request(make_request(tmp_path, **changes))
    assert message in str(refused.value)


def test_missing_image_is_named(tmp_path):
    with pytest.raises(VmError, match="does not exist: build it first"):
        check_request(make_request(tmp_path, image_path=tmp_path / "nope.raw"))


def test_seed_server_answers_only_under_its_secret_path():
    async def fetch_all() -> dict[str, int | bytes]:
        seed = SeedServer({"user-data": b"#cloud-config\n", "meta-data": b"{}"})
        await seed.start()
        base = f"http://127.0.0.1:{seed.port}"
        urls = {
            "right": f"{base}/{seed.secret}/user-data",
            "wrong secret": f"{base}/{seed.secret[:-1]}x/user-data",
            "no secret": f"{base}/user-data",
            "traversal": f"{base}/{seed.secret}/../user-data",
            "unknown": f"{base}/{seed.secret}/../../etc/passwd",
        }
        try:
            return {name: await asyncio.to_thread(_status, url) for name, url in urls.items()}
        finally:
            await seed.stop()

    seen = asyncio.run(fetch_all())
    assert seen == {"right": b"#cloud-config\n", "wrong secret": 404, "no secret": 404,
                    "traversal": 404, "unknown": 404}


def _status(url: str) -> int | bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read()
    except urllib.error.HTTPError as error:
        return error.code


def test_image_key_follows_the_recipe():
    recipe = VmImageRecipe(versions={"jupyterhub": "5.0.0"})
    assert recipe.key == VmImageRecipe(versions={"jupyterhub": "5.0.0"}).key
    assert recipe.key != VmImageRecipe(versions={"jupyterhub": "5.1.0"}).key
    assert recipe.key == VmImageRecipe(mirror="http://mirror.example/debian",
                                       versions={"jupyterhub": "5.0.0"}).key
    assert len(recipe.key) == 16


def test_initrd_modules_load_after_what_they_need():
    modules_dep = "\n".join([
        "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko",
        "kernel/crypto/crc32c_generic.ko:",
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko"
        " kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko"
        " kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/virtio/virtio.ko:", "kernel/lib/crc16.ko:", "kernel/fs/mbcache.ko:",
        "kernel/fs/jbd2/jbd2.ko:",
    ])
    order = module_load_order(modules_dep, ("virtio_pci", "virtio_blk", "ext4"))
    assert order == [
        "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/block/virtio_blk.ko",
        "kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko", "kernel/lib/crc16.ko",
        "kernel/fs/ext4/ext4.ko",
    ]
    with pytest.raises(ImageBuildError, match="the kernel has no module 9p"):
        module_load_order(modules_dep, ("9p",))


def test_initrd_archive_is_newc_with_a_console():
    archive = newc_archive({"init": (0o755, b"#!/bin/busybox sh\n"), "lib/m/a.ko": (0o644, b"A")})
    names = []
    offset = 0
    while True:
        header = archive[offset:offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name = archive[offset + 110:offset + 110 + namesize - 1].decode()
        offset += 110 + namesize
        offset += -offset % 4
        data = archive[offset:offset + size]
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            break
        names.append((name, oct(mode), rdev, data))
    assert offset == len(archive)
    assert ("dev/console", oct(0o020600), (5, 1), b"") in names
    assert ("init", oct(0o100755), (0, 0), b"#!/bin/busybox sh\n") in names
    assert ("lib/m/a.ko", oct(0o100644), (0, 0), b"A") in names
    folders = [name for name, mode, _, _ in names if mode == oct(0o040755)]
    assert folders.index("lib") < folders.index("lib/m")
    assert {"bin", "dev", "proc", "sys", "root"} <= set(folders)
