"""The Debian VM image the simulated compute boots: built from Debian's packages, cached.

``build_vm_image(cache_dir)`` returns ``<cache_dir>/<key>/disk.raw``, building it only when
no image of the same recipe is there (the key is a digest of ``VmImageRecipe``). The build,
a few minutes, runs as root and mounts nothing:

1. ``debootstrap --variant=minbase`` of bookworm with Debian's kernel, cloud-init, Python
   and the few tools cloud-init's modules call (``DEBIAN_PACKAGES``);
2. the image's files (``VmImageRecipe.files``): a small init (``INIT``), cloud-init's
   settings (NoCloud only, no network configuration, the modules it runs), an initrd that
   holds only the modules a virtio root needs;
3. the server: a venv ``/opt/kioskhub`` with jupyterhub, jupyterlab and ipykernel at the
   hub's versions, pip-installed from PyPI inside the new system (``chroot``);
4. ``mkfs.ext4 -d``: the tree becomes a sparse raw disk holding one ext4 file system.

Booting it (``qemu.py``) skips the boot loader and systemd: qemu loads the image's kernel
and initrd itself, and ``INIT`` runs as process 1: it brings up the network of qemu's user
mode (10.0.2.15, gateway and host 10.0.2.2, DNS 10.0.2.3), copies cloud-init's seed from
qemu's firmware configuration into ``/var/lib/cloud/seed/nocloud``, runs cloud-init's stages in
order (after udev has settled the devices), writing to the serial console, then reaps
orphans until Ctrl-Alt-Del, on which it
stops every process, unmounts and powers off.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kioskhub.spawner.pod_image import DEFAULT_MIRROR, debian_mirror, read_apt_sources

RECIPE_VERSION = 3
"""Raise when the build steps change in a way the recipe's digest would not see."""
SUITE = "bookworm"
DEBIAN_PACKAGES = (
    "linux-image-amd64",
    "busybox-static",
    "cloud-init",
    "python3-cffi-backend",  # debootstrap does not resolve python3-cryptography's virtual one
    "python3-venv",
    "ca-certificates",
    "iproute2",
    "udev",
    "e2fsprogs",
    "fdisk",
    "procps",
)
SERVER_PACKAGES = ("jupyterhub", "jupyterlab", "ipykernel")
VENV = "/opt/kioskhub"
IMAGE_USER, IMAGE_UID, IMAGE_GID = "jovyan", 1000, 100
DISK_SIZE = "4G"
INITRD_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
"""What mounting a virtio root needs; the rest (virtio_net, ...) loads from the root."""
KERNEL = "/boot/kioskhub-vmlinux"
INITRD = "/boot/kioskhub-initrd.img"
"""Where the image keeps the kernel (uncompressed: qemu boots it through its PVH entry,
skipping the decompression that takes seconds without KVM) and the image's own initrd."""

INITRD_INIT = """#!/bin/busybox sh
# The initrd of a KioskHub VM: load the modules of a virtio root, mount it, run its init.
b=/bin/busybox
$b mount -t devtmpfs devtmpfs /dev
$b mount -t proc proc /proc
for module in $($b cat /modules); do
    $b insmod "/lib/modules/$module" || echo "initrd: could not load $module"
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 200 ]; do $b sleep 0.05; n=$((n + 1)); done
if ! $b mount -t ext4 -o rw /dev/vda /root; then
    echo "initrd: cannot mount the root file system /dev/vda"
    exit 1
fi
$b mount --move /dev /root/dev
$b umount /proc
exec $b switch_root /root /usr/local/sbin/kioskhub-vm-init
"""

INIT = r'''#!/usr/bin/python3 -I
"""Process 1 of a KioskHub VM: network, cloud-init's stages, then reap until Ctrl-Alt-Del."""
import ctypes, os, signal, subprocess, sys, time

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C.UTF-8", "TERM": "linux"}
STAGES = (["init", "--local"], ["init"], ["modules", "--mode", "config"],
          ["modules", "--mode", "final"])


class Shutdown(Exception):
    pass


def say(text):
    print(f"kioskhub-vm-init: {text}", flush=True)


def run(*argv):
    return subprocess.run(argv, env=ENV, stdin=subprocess.DEVNULL).returncode


def mount(kind, target, options=""):
    os.makedirs(target, exist_ok=True)
    if not os.path.ismount(target):
        run("mount", "-t", kind, "-o", options or "defaults", kind, target)


def copy_seed():
    """cloud-init's NoCloud seed, from the files qemu passed as firmware configuration."""
    run("modprobe", "qemu_fw_cfg")
    source = "/sys/firmware/qemu_fw_cfg/by_name/opt/org.kioskhub"
    target = "/var/lib/cloud/seed/nocloud"
    os.makedirs(target, mode=0o700, exist_ok=True)
    for name in ("user-data", "meta-data"):
        try:
            with open(f"{source}/{name}/raw", "rb") as entry:
                data = entry.read()
        except OSError as error:
            say(f"no {name} from the firmware configuration ({error})")
            continue
        descriptor = os.open(f"{target}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as seed:
            seed.write(data)
    say(f"cloud-init's seed from the firmware configuration in {target}")


def on_signal(number, frame):
    raise Shutdown()


def shut_down():
    say("shutting down")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
        try:
            os.kill(-1, sig)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    time.sleep(0.05)
            except ChildProcessError:
                break
    os.sync()
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    keep = {"/", "/proc", "/sys", "/dev", "/run"}
    for point in reversed(points):
        if point not in keep and not point.startswith(("/proc/", "/sys/", "/dev/")):
            run("umount", point)
    run("mount", "-o", "remount,ro", "/")
    os.sync()
    say("powering off")
    ctypes.CDLL(None, use_errno=True).reboot(0x4321FEDC)


def main():
    ctypes.CDLL(None, use_errno=True).reboot(0)  # Ctrl-Alt-Del: SIGINT to us, not a reset
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        mount("proc", "/proc")
        mount("sysfs", "/sys")
        mount("devtmpfs", "/dev")
        mount("devpts", "/dev/pts", "gid=5,mode=620")
        mount("tmpfs", "/dev/shm", "mode=1777")
        mount("tmpfs", "/run", "mode=755")
        # udev: drivers for what qemu attached, /dev/disk/by-*, and the file system types
        # that lsblk reports to cloud-init (without them disk_setup formats a used volume).
        run("/usr/lib/systemd/systemd-udevd", "--daemon")
        run("udevadm", "trigger", "--action=add", "--type=subsystems")
        run("udevadm", "trigger", "--action=add", "--type=devices")
        run("udevadm", "settle", "--timeout=60")
        run("modprobe", "-a", "virtio_net", "virtio_rng")
        run("ip", "link", "set", "lo", "up")
        run("ip", "link", "set", "eth0", "up")
        run("ip", "address", "add", "10.0.2.15/24", "dev", "eth0")
        run("ip", "route", "add", "default", "via", "10.0.2.2")
        with open("/etc/resolv.conf", "w") as resolv:
            resolv.write("nameserver 10.0.2.3\n")
        say("network up (10.0.2.15, gateway 10.0.2.2)")
        copy_seed()
        for stage in STAGES:
            start = time.monotonic()
            code = run("cloud-init", *stage)
            outcome = "done" if code == 0 else f"failed (exit {code})"
            say(f"cloud-init {' '.join(stage)}: {outcome} in {time.monotonic() - start:.1f} s")
        say("cloud-init's stages are over")
        while True:
            try:
                os.wait()
            except ChildProcessError:
                signal.pause()
    except Shutdown:
        shut_down()


main()
'''

CLOUD_CFG = """\
# KioskHub VM image: the seed comes from NoCloud (the seed folder, a cidata disk or a URL);
# the image's init brings the network up, so cloud-init leaves it alone.
datasource_list: [NoCloud, None]
network: {config: disabled}
system_info:
  default_user: {name: jovyan, lock_passwd: true, shell: /bin/bash}
cloud_init_modules:
  - seed_random
  - bootcmd
  - write_files
  - disk_setup
  - mounts
  - set_hostname
  - update_hostname
  - update_etc_hosts
  - ca_certs
  - users_groups
cloud_config_modules:
  - runcmd
cloud_final_modules:
  - package_update_upgrade_install
  - write_files_deferred
  - scripts_vendor
  - scripts_per_once
  - scripts_per_boot
  - scripts_per_instance
  - scripts_user
  - phone_home
  - final_message
  - power_state_change
"""

Report = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """A step of the VM image build failed; the message says which and why."""


def server_versions() -> dict[str, str]:
    """The hub's own versions of the server packages, so hub and server agree."""
    from importlib.metadata import version

    return {name: version(name) for name in SERVER_PACKAGES}


@dataclass(frozen=True)
class VmImageRecipe:
    """Everything that decides the VM image's content."""

    mirror: str = DEFAULT_MIRROR
    suite: str = SUITE
    debian_packages: tuple[str, ...] = DEBIAN_PACKAGES
    versions: dict[str, str] = field(default_factory=server_versions)
    disk_size: str = DISK_SIZE

    def files(self) -> dict[str, tuple[int, str]]:
        """Files written into the new system: path → (mode, text)."""
        return {
            "/usr/local/sbin/kioskhub-vm-init": (0o755, INIT),
            "/etc/cloud/cloud.cfg.d/90_kioskhub.cfg": (0o644, CLOUD_CFG),
            "/etc/fstab": (0o644, "/dev/vda / ext4 defaults 0 0\n"),
            "/etc/hostname": (0o644, "kioskhub-vm\n"),
        }

    @property
    def key(self) -> str:
        """16 hex digits of the recipe (the mirror is left out: it serves the same suite)."""
        recipe = {
            "version": RECIPE_VERSION,
            "suite": self.suite,
            "packages": self.debian_packages,
            "versions": self.versions,
            "files": self.files(),
            "initrd": [INITRD_INIT, INITRD_MODULES],
            "size": self.disk_size,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def default_recipe() -> VmImageRecipe:
    """The recipe for this machine: its Debian mirror and the hub's server versions."""
    return VmImageRecipe(mirror=debian_mirror(read_apt_sources()))


def missing_tools() -> list[str]:
    """The Debian packages of the build's programs that this machine lacks."""
    tools = {"debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "chroot": "coreutils"}
    return sorted({package for tool, package in tools.items() if shutil.which(tool) is None})


def build_vm_image(
    cache_dir: Path, recipe: VmImageRecipe | None = None, report: Report = print
) -> Path:
    """The image's disk for ``recipe`` under ``cache_dir``, built when it is not there yet."""
    recipe = recipe or default_recipe()
    target = cache_dir / recipe.key
    disk = target / "disk.raw"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{recipe.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if disk.is_file():
            return disk
        missing = missing_tools()
        if missing:
            raise ImageBuildError(
                f"the VM image build needs the Debian package(s) {' '.join(missing)} "
                f"(apt-get install {' '.join(missing)})"
            )
        if os.geteuid() != 0:
            raise ImageBuildError("the VM image build runs debootstrap and chroot: run it as root")
        with tempfile.TemporaryDirectory(prefix="kioskhub-vm-image-", dir="/var/tmp") as work:
            built = _build(recipe, Path(work), report)
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            shutil.move(built, disk)
            (target / "recipe.json").write_text(
                json.dumps({"key": recipe.key, "versions": recipe.versions}, indent=1) + "\n"
            )
    return disk


def _build(recipe: VmImageRecipe, work: Path, report: Report) -> Path:
    start = time.monotonic()

    def step(text: str) -> None:
        report(f"[VM image {time.monotonic() - start:5.0f}s] {text}")

    rootfs = work / "rootfs"
    step(f"Debian {recipe.suite} from {recipe.mirror} with debootstrap")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(recipe.debian_packages)}",
          recipe.suite, str(rootfs), recipe.mirror])
    step("the image's init, cloud-init settings, its kernel and an initrd for a virtio root")
    for path, (mode, text) in recipe.files().items():
        inside = rootfs / path.lstrip("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.write_text(text)
        inside.chmod(mode)
    _write_boot_files(rootfs)
    _chroot(rootfs, "useradd", "--uid", str(IMAGE_UID), "--gid", str(IMAGE_GID),
            "--create-home", "--shell", "/bin/bash", IMAGE_USER)
    packages = [f"{name}=={version}" for name, version in sorted(recipe.versions.items())]
    step(f"the server in {VENV}: {' '.join(packages)} (pip, from PyPI)")
    _install_server(rootfs, packages)
    step("cleaning up")
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "root/.cache"):
        shutil.rmtree(rootfs / leftover, ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    disk = work / "disk.raw"
    step(f"mkfs.ext4 -d: the tree into a {recipe.disk_size} sparse disk")
    _run(["mkfs.ext4", "-q", "-F", "-L", "kioskhub-root", "-d", str(rootfs), str(disk),
          recipe.disk_size])
    step(f"done ({disk.stat().st_blocks * 512 / 2**20:.0f} MiB used)")
    return disk


def _write_boot_files(rootfs: Path) -> None:
    """The uncompressed kernel and a small initrd at fixed names, which ``qemu.py`` reads."""
    boot = rootfs / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    if not kernels:
        raise ImageBuildError("debootstrap installed no kernel in /boot")
    release = kernels[-1].name.removeprefix("vmlinuz-")
    (rootfs / KERNEL.lstrip("/")).write_bytes(uncompressed_kernel(kernels[-1].read_bytes()))
    modules = rootfs / "usr/lib/modules" / release
    order = module_load_order((modules / "modules.dep").read_text(), INITRD_MODULES)
    files = {"init": (0o755, INITRD_INIT.encode()),
             "modules": (0o644, "\n".join(order).encode() + b"\n"),
             "bin/busybox": (0o755, (rootfs / "bin/busybox").read_bytes())}
    for module in order:
        files[f"lib/modules/{module}"] = (0o644, (modules / module).read_bytes())
    (rootfs / INITRD.lstrip("/")).write_bytes(newc_archive(files))
    for stale in boot.glob("initrd.img-*"):
        stale.unlink()  # initramfs-tools' initrd, which the image does not boot


def uncompressed_kernel(bzimage: bytes) -> bytes:
    """The ELF kernel inside Debian's xz-compressed bzImage."""
    import lzma

    start = bzimage.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise ImageBuildError("the kernel is not xz-compressed: cannot unpack it")
    kernel = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
    if not kernel.startswith(b"\x7fELF"):
        raise ImageBuildError("the unpacked kernel is not an ELF file")
    return kernel


def module_load_order(modules_dep: str, wanted: tuple[str, ...]) -> list[str]:
    """Paths of ``wanted`` modules and what they need, each after its dependencies (pure)."""
    needs: dict[str, list[str]] = {}
    for line in modules_dep.splitlines():
        module, _, deps = line.partition(":")
        needs[module] = deps.split()
    by_name = {Path(path).name.split(".ko")[0].replace("-", "_"): path for path in needs}
    order: list[str] = []

    def load(path: str) -> None:
        if path in order:
            return
        for dep in reversed(needs.get(path, [])):
            load(dep)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise ImageBuildError(f"the kernel has no module {name}")
        load(by_name[name])
    return order


def newc_archive(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A cpio archive in the kernel's ``newc`` format: folders, /dev/console, ``files``."""
    folders = sorted({str(Path(name).parent) for name in files} - {"."}
                     | {"dev", "proc", "sys", "root", "bin"})
    entries = [(folder, 0o040755, b"", 0) for folder in _with_parents(folders)]
    entries.append(("dev/console", 0o020600, b"", (5 << 8) | 1))
    entries += [(name, 0o100000 | mode, data, 0) for name, (mode, data) in sorted(files.items())]
    out = bytearray()
    for inode, (name, mode, data, device) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)]):
        encoded = name.encode() + b"\0"
        fields = (inode + 1, mode, 0, 0, 1, 0, len(data), 0, 0, device >> 8, device & 0xFF,
                  len(encoded), 0)
        out += b"070701" + "".join(f"{field:08X}" for field in fields).encode() + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def _with_parents(folders: list[str]) -> list[str]:
    every = set()
    for folder in folders:
        path = Path(folder)
        every.update(str(p) for p in [path, *path.parents] if str(p) != ".")
    return sorted(every, key=lambda name: (name.count("/"), name))


def _install_server(rootfs: Path, packages: list[str]) -> None:
    """pip inside the new system, with the host's CA bundle and DNS for the download."""
    shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    bundle = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"]
    if Path(bundle).is_file():
        shutil.copy(bundle, rootfs / "tmp/host-ca.crt")
        env.append("PIP_CERT=/tmp/host-ca.crt")
    index = os.environ.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):
        env.append(f"PIP_INDEX_URL={index}")
    _chroot(rootfs, "python3", "-m", "venv", VENV)
    _chroot(rootfs, "env", "-i", *env, f"{VENV}/bin/pip", "install", "--no-cache-dir",
            "--progress-bar", "off", "--quiet", *packages)
    (rootfs / "tmp/host-ca.crt").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("nameserver 10.0.2.3\n")


def _chroot(rootfs: Path, *argv: str) -> None:
    _run(["chroot", str(rootfs), *argv])


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ImageBuildError(f"`{' '.join(argv[:4])} ...` failed (exit {result.returncode}):\n"
                              f"{tail}")
