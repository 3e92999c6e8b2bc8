"""Real virtual machines for the simulated compute: qemu, booted from a KioskHub VM image.

The compute of the Nova simulation hands a ``VmRequest`` to ``QemuMachine``, which

- puts a qcow2 overlay on the (read-only, shared) base image, so every VM starts from the
  same disk and writes only its own changes;
- boots qemu straight into the image's Debian kernel and small initrd (``-kernel``/
  ``-initrd``, read out of the ext4 image with ``debugfs``, no mount), and the image's small
  init (``vm_image.py``) instead of a boot loader and systemd: seconds even without KVM;
- hands cloud-init the user-data and meta-data through NoCloud: qemu passes the two files
  (0600, in the VM's own 0700 folder) to the guest as firmware configuration entries
  (``-fw_cfg name=opt/org.kioskhub/user-data,file=...``), and the image's init copies them
  into cloud-init's seed folder ``/var/lib/cloud/seed/nocloud``. Nothing on the host serves
  them, and qemu's command line, which every local account can read, holds only paths;
- forwards each of ``forward_ports`` from ``address:port`` on the host to the same port of
  the guest (one 127.0.0.x address per VM, so two VMs can both serve 8888);
- attaches each volume as a virtio disk (``/dev/vdb``, ``/dev/vdc``, ...), its serial the
  file's name as Nova's is the volume id (``/dev/disk/by-id/virtio-<name>``);
- captures the serial console in ``console.log`` (kernel, init and cloud-init output).

KVM is used when ``/dev/kvm`` opens and a probe guest actually runs on it (on some machines
KVM hangs); otherwise software emulation (TCG). ``stop()`` presses Ctrl-Alt-Del, which the
image's init answers by stopping its processes, unmounting (so volumes keep what was
written) and powering off; a guest that does not go down in time is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .vm_image import INITRD as INITRD_IN_IMAGE
from .vm_image import KERNEL as KERNEL_IN_IMAGE

GUEST_HOST_ADDRESS = "10.0.2.2"
"""How the guest reaches the host's loopback on qemu's user network."""
GUEST_ADDRESS = "10.0.2.15"
SEED_FW_CFG = "opt/org.kioskhub"
"""Where the guest finds the seed: /sys/firmware/qemu_fw_cfg/by_name/opt/org.kioskhub/."""
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debugfs": "e2fsprogs",
}
"""The programs a VM needs, and the Debian package of each."""
STOP_TIMEOUT = 30.0


class VmError(RuntimeError):
    """A VM could not be started; the message says why and what to do."""


@dataclass(frozen=True, kw_only=True)
class VmRequest:
    """One virtual machine, as the compute asks for it."""

    name: str
    image_path: Path
    user_data: str
    meta_data: dict
    cpus: int = 1
    memory_mb: int = 1024
    volumes: list[Path] = field(default_factory=list)
    address: str = "127.0.0.1"
    forward_ports: list[int] = field(default_factory=list)
    workdir: Path


def missing_tools() -> list[str]:
    """The Debian packages of the programs a VM needs that this machine lacks."""
    return sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})


def check_request(request: VmRequest) -> None:
    """Raise VmError naming what is wrong with ``request``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", request.name):
        raise VmError(f"VM name {request.name!r}: use 1-63 letters, digits, '.', '_' or '-'")
    if not request.image_path.is_file():
        raise VmError(f"VM image {request.image_path} does not exist: build it first")
    try:
        address = ipaddress.IPv4Address(request.address)
    except ValueError:
        raise VmError(f"forwarding address {request.address!r} is not an IPv4 address") from None
    if not address.is_loopback:
        raise VmError(f"forwarding address {request.address} is not a loopback address (127.x)")
    for port in request.forward_ports:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise VmError(f"forwarded port {port!r} is not a port number (1-65535)")
    for volume in request.volumes:
        if not Path(volume).is_file():
            raise VmError(f"volume {volume} does not exist")
    if request.cpus < 1 or request.memory_mb < 256:
        raise VmError(f"VM {request.name}: needs at least 1 CPU and 256 MB of memory")


def kernel_command_line() -> str:
    """The kernel's command line: serial console, classic interface names (eth0)."""
    return " ".join(
        [
            "console=ttyS0",
            "quiet",
            "net.ifnames=0",
            "panic=1",
        ]
    )


def volume_format(volume: Path) -> str:
    """qcow2 for ``*.qcow2`` volumes, raw for any other file."""
    return "qcow2" if Path(volume).suffix == ".qcow2" else "raw"


def volume_serial(volume: Path) -> str:
    """The disk's serial, as Nova sets a volume's id: the guest finds the volume as
    ``/dev/disk/by-id/virtio-<serial>`` (the file's name without suffix, 20 characters)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", Path(volume).stem)[:20]


def qemu_argv(
    request: VmRequest,
    *,
    accelerator: str,
    kernel: Path,
    initrd: Path,
    root_disk: Path,
    console: Path,
    seed: Path,
) -> list[str]:
    """The qemu command line for ``request`` (pure). The monitor is on qemu's stdin."""
    forwards = "".join(
        f",hostfwd=tcp:{request.address}:{port}-:{port}" for port in request.forward_ports
    )
    argv = [
        "qemu-system-x86_64",
        "-name",
        f"guest={request.name}",
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display",
        "none",
        "-accel",
        "kvm" if accelerator == "kvm" else "tcg,thread=multi",
        "-cpu",
        "host" if accelerator == "kvm" else "max",
        "-smp",
        str(request.cpus),
        "-m",
        str(request.memory_mb),
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        kernel_command_line(),
        "-drive",
        f"file={_option(root_disk)},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=root",
    ]
    for number, volume in enumerate(request.volumes, start=1):
        argv += [
            "-drive",
            f"file={_option(volume)},if=none,id=volume{number},format={volume_format(volume)}",
            "-device",
            f"virtio-blk-pci,drive=volume{number},serial={volume_serial(volume)}",
        ]
    argv += [
        "-netdev",
        f"user,id=net0,net=10.0.2.0/24,host={GUEST_HOST_ADDRESS}{forwards}",
        "-device",
        "virtio-net-pci,netdev=net0",
        "-device",
        "virtio-rng-pci",
        "-fw_cfg",
        f"name={SEED_FW_CFG}/user-data,file={_option(seed / 'user-data')}",
        "-fw_cfg",
        f"name={SEED_FW_CFG}/meta-data,file={_option(seed / 'meta-data')}",
        "-chardev",
        f"file,id=console,path={_option(console)}",
        "-serial",
        "chardev:console",
        "-monitor",
        "stdio",
    ]
    return argv


def _option(path: Path) -> str:
    """A path as the value of a qemu option, where a comma is written twice."""
    return str(path).replace(",", ",,")


def seed_documents(request: VmRequest) -> dict[str, bytes]:
    """The NoCloud seed: user-data as given, meta-data as JSON (a subset of YAML)."""
    meta_data = {"instance-id": request.name, "local-hostname": request.name}
    meta_data.update(request.meta_data)
    return {
        "user-data": request.user_data.encode(),
        "meta-data": json.dumps(meta_data, indent=1).encode(),
    }


def write_seed(request: VmRequest, folder: Path) -> Path:
    """The seed's files in ``folder`` (made 0700), each 0600: they hold the server's token."""
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    for name, data in seed_documents(request).items():
        path = folder / name
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as seed_file:
            seed_file.write(data)
    return folder


_PROBE_BOOT_SECTOR = bytes([0xB0, 0x01, 0xE6, 0xF4, 0xEB, 0xFE]).ljust(510, b"\0") + b"\x55\xaa"
"""``mov al, 1; out 0xf4, al; jmp $``: a guest that asks qemu's debug-exit device to exit 3."""


@functools.cache
def accelerator() -> str:
    """``kvm`` when /dev/kvm opens and a probe guest runs on it within seconds, else ``tcg``."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return "tcg"
    with tempfile.NamedTemporaryFile(suffix=".img") as disk:
        disk.write(_PROBE_BOOT_SECTOR)
        disk.flush()
        argv = ["qemu-system-x86_64", "-accel", "kvm", "-nodefaults", "-no-user-config",
                "-display", "none", "-m", "16", "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
                "-drive", f"file={disk.name},format=raw,if=floppy"]
        try:
            probe = subprocess.run(argv, capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            return "tcg"
    return "kvm" if probe.returncode == 3 else "tcg"


async def _run(*argv: str, cwd: Path | None = None) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise VmError(f"{argv[0]} failed (exit {process.returncode}): {output.decode().strip()}")


async def extract_boot_files(image: Path, folder: Path) -> tuple[Path, Path]:
    """Copy the image's kernel and initrd out of its ext4 file system (debugfs, no mount)."""
    kernel, initrd = folder / "vmlinux", folder / "initrd.img"
    for inside, outside in ((KERNEL_IN_IMAGE, kernel), (INITRD_IN_IMAGE, initrd)):
        outside.unlink(missing_ok=True)
        # debugfs parses its command itself: give it a plain name, written in ``folder``.
        await _run("debugfs", "-R", f"dump -p {inside} {outside.name}", str(image.resolve()),
                   cwd=folder)
        if not outside.is_file() or outside.stat().st_size == 0:
            raise VmError(f"{image} has no {inside}: it is not a KioskHub VM image")
    return kernel, initrd


class QemuMachine:
    """One running VM: ``start()``, ``stop()``, ``console_log()``, ``returncode``."""

    def __init__(self, request: VmRequest):
        self.request = request
        self.process: asyncio.subprocess.Process | None = None
        self.console_path = request.workdir / "console.log"
        self.accelerator = ""

    @property
    def returncode(self) -> int | None:
        """None while qemu runs (or before start), its exit status once it stopped."""
        return None if self.process is None else self.process.returncode

    def console_log(self) -> str:
        """Everything the guest wrote to its serial console so far."""
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def start(self) -> None:
        """Start qemu; returns once it runs (the guest then boots on its own)."""
        missing = missing_tools()
        if missing:
            raise VmError(
                f"VMs need the Debian package(s) {' '.join(missing)} "
                f"(apt-get install --no-install-recommends {' '.join(missing)})"
            )
        request = self.request
        check_request(request)
        request.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        request.workdir.chmod(0o700)
        kernel, initrd = await extract_boot_files(request.image_path, request.workdir)
        root_disk = request.workdir / "root.qcow2"
        root_disk.unlink(missing_ok=True)
        await _run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                   "-b", str(request.image_path.resolve()), str(root_disk))
        seed = write_seed(request, request.workdir / "seed")
        self.accelerator = await asyncio.to_thread(accelerator)
        argv = qemu_argv(request, accelerator=self.accelerator, kernel=kernel, initrd=initrd,
                         root_disk=root_disk, console=self.console_path, seed=seed)
        self.console_path.write_bytes(b"")
        with open(request.workdir / "qemu.log", "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=log, stderr=log,
                start_new_session=True,
            )
        try:
            await asyncio.wait_for(self.process.wait(), 0.5)
        except TimeoutError:
            return
        output = (request.workdir / "qemu.log").read_text(errors="replace").strip()
        raise VmError(f"qemu exited at once (exit {self.process.returncode}): {output}")

    async def wait(self) -> int:
        """Wait until qemu exits; its exit status."""
        assert self.process is not None
        return await self.process.wait()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut the guest down (Ctrl-Alt-Del), killing it when it does not go in time."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(OSError, RuntimeError):
                assert process.stdin is not None
                process.stdin.write(b"sendkey ctrl-alt-delete\n")
                await process.stdin.drain()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
