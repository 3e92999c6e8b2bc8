"""The VM runner's pure parts: qemu's command line, the NoCloud seed, checks of a request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.openstack_sim.qemu import (
    VmError,
    VmRequest,
    check_request,
    kernel_command_line,
    qemu_argv,
    seed_documents,
    volume_serial,
    write_seed,
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
        root_disk=Path("/vm/root.qcow2"), console=Path("/vm/console.log"), seed=Path("/vm/seed"),
    )
    assert argv == [
        "qemu-system-x86_64", "-name", "guest=kh-ada-1", "-nodefaults", "-no-user-config",
        "-no-reboot", "-display", "none", "-accel", "tcg,thread=multi", "-cpu", "max",
        "-smp", "2", "-m", "2048", "-kernel", "/vm/vmlinuz", "-initrd", "/vm/initrd.img",
        "-append",
        "console=ttyS0 quiet net.ifnames=0 panic=1",
        "-drive", "file=/vm/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        "-device", "virtio-blk-pci,drive=root",
        "-drive", f"file={tmp_path}/home.raw,if=none,id=volume1,format=raw",
        "-device", "virtio-blk-pci,drive=volume1,serial=home",
        "-netdev",
        "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.7:8888-:8888",
        "-device", "virtio-net-pci,netdev=net0", "-device", "virtio-rng-pci",
        "-fw_cfg", "name=opt/org.kioskhub/user-data,file=/vm/seed/user-data",
        "-fw_cfg", "name=opt/org.kioskhub/meta-data,file=/vm/seed/meta-data",
        "-chardev", "file,id=console,path=/vm/console.log", "-serial", "chardev:console",
        "-monitor", "stdio",
    ]


def test_kvm_uses_the_host_cpu(tmp_path):
    argv = qemu_argv(make_request(tmp_path), accelerator="kvm", kernel=Path("k"),
                     initrd=Path("i"), root_disk=Path("r"), console=Path("c"), seed=Path("s"))
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
                     console=Path("/c,x"), seed=Path("s"))
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
    assert set(documents) == {"user-data", "meta-data"}


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


def test_the_seed_reaches_the_guest_only_through_private_files(tmp_path):
    """The user-data holds the server's token: not on qemu's command line (which every
    account can read in /proc), and in files only root can read."""
    token = "f00dfeedf00dfeedf00dfeedf00dfeed"
    request = make_request(tmp_path, user_data=f"#cloud-config\n# {token}\n")
    (tmp_path / "vm").mkdir(mode=0o755)
    seed = write_seed(request, tmp_path / "vm" / "seed")
    assert (seed / "user-data").read_text() == f"#cloud-config\n# {token}\n"
    assert seed.stat().st_mode & 0o777 == 0o700
    for name in ("user-data", "meta-data"):
        assert (seed / name).stat().st_mode & 0o777 == 0o600
    argv = qemu_argv(request, accelerator="tcg", kernel=Path("k"), initrd=Path("i"),
                     root_disk=Path("r"), console=Path("c"), seed=seed)
    assert not any(token in arg for arg in argv)
    assert token not in kernel_command_line()


def test_a_planted_link_in_the_seed_folder_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "user-data").symlink_to(outside)
    write_seed(make_request(tmp_path), seed)
    assert outside.read_text() == "untouched"
    assert not (seed / "user-data").is_symlink()


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
