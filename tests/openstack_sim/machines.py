"""The simulated compute host's machine drivers: what happens when Nova boots a server.

A driver's ``boot(ServerBoot)`` returns a started machine with async ``stop()`` and
``console_log()``; ``volume_path`` gives a new Cinder volume's backing file. The real one
boots a qemu VM from a Debian image whose cloud-init runs the user-data; the small doubles
below boot nothing, for the failures that happen before or without a boot, each named after
what it does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ServerBoot:
    """What the compute host is asked to boot for one server."""

    name: str
    image_path: str
    user_data: str
    meta_data: dict[str, str]
    cpus: int
    memory_mb: int
    volumes: list[str] = field(default_factory=list)
    volume_serials: list[str] = field(default_factory=list)
    """The serial of each volume's disk (Nova's: the volume id, cut to 20 characters)."""
    address: str = ""
    """The loopback address whose ports reach the machine."""


class Machine(Protocol):
    async def stop(self) -> None: ...

    async def console_log(self) -> str: ...


class MachineDriver(Protocol):
    async def boot(self, boot: ServerBoot) -> Machine: ...

    def volume_path(self, volume_id: str, size_gb: int) -> str: ...


CLOUD_INIT_LINES = (
    "[    0.000000] Linux version 6.1.0-kioskhub (simulated machine)",
    "cloud-init[301]: Cloud-init v. 22.4.2 running 'init' at boot.",
    "cloud-init[402]: Cloud-init v. 22.4.2 running 'modules:config'.",
    "cloud-init[503]: Cloud-init v. 22.4.2 finished. Datasource DataSourceNoCloud.",
)


class IdleMachine:
    """A machine that boots and then runs nothing: its server never answers."""

    stays_in_build = False

    def __init__(self, boot: ServerBoot) -> None:
        self.boot = boot
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True

    async def console_log(self) -> str:
        return "\n".join(CLOUD_INIT_LINES) + "\n"


class IdleMachines:
    """Machines that boot and run nothing; ``booted`` keeps what each was asked to run."""

    machine_class = IdleMachine

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.booted: list[ServerBoot] = []

    async def boot(self, boot: ServerBoot) -> IdleMachine:
        self.booted.append(boot)
        return self.machine_class(boot)

    def volume_path(self, volume_id: str, size_gb: int) -> str:
        if self.folder is None:
            return ""
        path = self.folder / f"volume-{volume_id}.img"
        with path.open("wb") as disk:
            disk.truncate(size_gb * 2**30)  # sparse, blank: cloud-init formats it
        return str(path)


class ServiceFailsMachine(IdleMachine):
    """cloud-init runs, but the server's service fails: its console says so."""

    async def console_log(self) -> str:
        return (
            await super().console_log()
            + "kioskhub-server[611]: Error: initializing source docker://envs/missing:1: "
            "manifest unknown\n"
            + "KIOSKHUB-SERVER-FAILED exit-code\n"
        )


class ServiceFailsMachines(IdleMachines):
    machine_class = ServiceFailsMachine


class NeverBootsMachine(IdleMachine):
    """A machine the host never finishes building: the server stays in BUILD."""

    stays_in_build = True

    async def console_log(self) -> str:
        return ""


class NeverBootsMachines(IdleMachines):
    machine_class = NeverBootsMachine


class QemuMachines(IdleMachines):
    """Real VMs: each server boots the image of its Glance image (``Image.path``) with qemu
    (``qemu.py``), its user-data handed to cloud-init, the server's port forwarded from the
    server's loopback address; volumes are sparse raw files attached as virtio disks."""

    def __init__(self, folder: Path, forward_ports: tuple[int, ...] = (8888,)) -> None:
        super().__init__(folder)
        self.forward_ports = forward_ports

    async def boot(self, boot: ServerBoot):
        from .qemu import QemuMachine, VmRequest

        self.booted.append(boot)
        assert self.folder is not None
        machine = QemuMachine(
            VmRequest(
                name=boot.name,
                image_path=Path(boot.image_path),
                user_data=boot.user_data,
                meta_data=boot.meta_data,
                cpus=boot.cpus,
                memory_mb=boot.memory_mb,
                volumes=[Path(volume) for volume in boot.volumes],
                address=boot.address,
                forward_ports=list(self.forward_ports),
                workdir=self.folder / f"vm-{boot.meta_data['instance-id']}",
            )
        )
        await machine.start()
        return QemuServer(machine)


class QemuServer:
    """A running qemu VM as the compute host sees it."""

    stays_in_build = False

    def __init__(self, machine) -> None:
        self.machine = machine

    async def stop(self) -> None:
        await self.machine.stop()

    async def console_log(self) -> str:
        return self.machine.console_log()
