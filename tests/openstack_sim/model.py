"""The simulated cloud's state: one project's flavors, images, networks, security groups,
volumes and servers, with Nova's and Cinder's quotas and status transitions.

Everything here runs on the simulation's loop. A server is BUILD until the compute host takes
it: a flavor no host has room for puts it in ERROR with Nova's "No valid host" fault; otherwise
the machine driver starts a machine for it and it becomes ACTIVE. Deleting a server stops its
machine and returns its volumes to ``available``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .machines import MachineDriver, ServerBoot


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiFault(Exception):
    """An error answer in the service's documented shape: ``{kind: {message, code}}``."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message

    def body(self) -> dict[str, Any]:
        return {self.kind: {"message": self.message, "code": self.status}}


@dataclass
class Flavor:
    name: str
    vcpus: int
    ram: int
    """MiB"""
    disk: int
    """GB"""
    extra_specs: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "vcpus": self.vcpus,
            "ram": self.ram,
            "disk": self.disk,
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "swap": 0,
            "rxtx_factor": 1.0,
            "os-flavor-access:is_public": True,
            "description": None,
            "extra_specs": dict(self.extra_specs),
            "links": [],
        }


@dataclass
class Image:
    name: str
    path: str = ""
    """The disk file the machine driver boots."""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "visibility": "public",
            "disk_format": "qcow2",
            "container_format": "bare",
            "min_disk": 0,
            "min_ram": 0,
            "tags": [],
            "created_at": now(),
            "updated_at": now(),
            "self": f"/v2/images/{self.id}",
            "file": f"/v2/images/{self.id}/file",
            "schema": "/v2/schemas/image",
        }


@dataclass
class Volume:
    name: str
    size: int
    project_id: str
    status: str = "creating"
    metadata: dict[str, str] = field(default_factory=dict)
    attached_to: str | None = None
    path: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: str = field(default_factory=now)

    def view(self) -> dict[str, Any]:
        attachments = []
        if self.attached_to:
            attachments.append(
                {
                    "id": self.id,
                    "attachment_id": f"att-{self.id[:8]}",
                    "volume_id": self.id,
                    "server_id": self.attached_to,
                    "device": "/dev/vdb",
                    "attached_at": now(),
                }
            )
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "status": self.status,
            "metadata": dict(self.metadata),
            "attachments": attachments,
            "bootable": "false",
            "volume_type": "__DEFAULT__",
            "availability_zone": "nova",
            "os-vol-tenant-attr:tenant_id": self.project_id,
            "created_at": self.created_at,
            "links": [],
        }


@dataclass
class SecurityGroup:
    name: str
    project_id: str
    description: str = ""
    rules: list[dict[str, Any]] = field(default_factory=list)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "stateful": True,
            "security_group_rules": [dict(rule) for rule in self.rules],
            "tags": [],
            "revision_number": len(self.rules),
        }


@dataclass
class Server:
    name: str
    project_id: str
    flavor: Flavor
    image: Image
    user_data: str
    metadata: dict[str, str]
    networks: list[str]
    security_groups: list[str]
    volumes: list[str]
    address: str = ""
    status: str = "BUILD"
    fault: dict[str, Any] | None = None
    machine: Any = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=now)

    def view(self, network_name: str) -> dict[str, Any]:
        addresses = {}
        if self.address:
            addresses[network_name] = [
                {"addr": self.address, "version": 4, "OS-EXT-IPS:type": "fixed"}
            ]
        body = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "tenant_id": self.project_id,
            "metadata": dict(self.metadata),
            "flavor": {
                "original_name": self.flavor.name,
                "vcpus": self.flavor.vcpus,
                "ram": self.flavor.ram,
                "disk": self.flavor.disk,
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": dict(self.flavor.extra_specs),
            },
            "image": {"id": self.image.id, "links": []},
            "addresses": addresses,
            "security_groups": [{"name": name} for name in self.security_groups],
            "os-extended-volumes:volumes_attached": [
                {"id": volume, "delete_on_termination": False} for volume in self.volumes
            ],
            "OS-EXT-STS:vm_state": {"BUILD": "building", "ACTIVE": "active"}.get(
                self.status, "error"
            ),
            "OS-EXT-STS:task_state": "spawning" if self.status == "BUILD" else None,
            "created": self.created,
            "updated": now(),
            "links": [],
        }
        if self.fault:
            body["fault"] = self.fault
        return body


QUOTA = {"instances": 10, "cores": 20, "ram": 51200, "volumes": 10, "gigabytes": 1000}


class Cloud:
    """One project's resources on the simulated cloud."""

    def __init__(self, driver: MachineDriver, host_vcpus: int = 16, step: float = 0.05):
        self.driver = driver
        self.host_vcpus = host_vcpus
        """The biggest flavor a compute host can take: more is "No valid host"."""
        self.step = step
        self.quota = dict(QUOTA)
        self.flavors: dict[str, Flavor] = {}
        self.images: dict[str, Image] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.security_groups: dict[str, SecurityGroup] = {}
        self.volumes: dict[str, Volume] = {}
        self.servers: dict[str, Server] = {}
        self.addresses = (f"127.0.0.{n}" for n in itertools.count(20))
        self.tasks: set[asyncio.Task] = set()

    # ---- Nova ----------------------------------------------------------------------

    def usage(self) -> dict[str, int]:
        live = list(self.servers.values())
        return {
            "instances": len(live),
            "cores": sum(s.flavor.vcpus for s in live),
            "ram": sum(s.flavor.ram for s in live),
        }

    def create_server(self, project_id: str, request: dict[str, Any]) -> Server:
        flavor = self.find(self.flavors, request.get("flavorRef"), "flavor", 400, "badRequest")
        image = self.images.get(request.get("imageRef", ""))
        if image is None:
            raise ApiFault(400, "badRequest", "Can not find requested image")
        used = self.usage()
        for resource, wanted in (("instances", 1), ("cores", flavor.vcpus), ("ram", flavor.ram)):
            if used[resource] + wanted > self.quota[resource]:
                raise ApiFault(
                    403,
                    "forbidden",
                    f"Quota exceeded for {resource}: Requested {wanted}, but already used "
                    f"{used[resource]} of {self.quota[resource]} {resource}",
                )
        volumes = []
        for mapping in request.get("block_device_mapping_v2", []):
            if mapping.get("source_type") != "volume":
                continue
            volume = self.volumes.get(mapping.get("uuid", ""))
            if volume is None or volume.status != "available":
                state = volume.status if volume else "missing"
                raise ApiFault(
                    400, "badRequest", f"Invalid volume: volume {mapping.get('uuid')} is {state}"
                )
            volumes.append(volume)
        try:
            user_data = base64.b64decode(request.get("user_data", ""), validate=True).decode()
        except ValueError:
            raise ApiFault(400, "badRequest", "User data needs to be valid base 64.") from None
        server = Server(
            name=request["name"],
            project_id=project_id,
            flavor=flavor,
            image=image,
            user_data=user_data,
            metadata=dict(request.get("metadata", {})),
            networks=[n.get("uuid", "") for n in request.get("networks", [])],
            security_groups=[g["name"] for g in request.get("security_groups", [])],
            volumes=[v.id for v in volumes],
        )
        for volume in volumes:
            volume.status, volume.attached_to = "reserved", server.id
        self.servers[server.id] = server
        self.spawn(self.build(server))
        return server

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def build(self, server: Server) -> None:
        """BUILD → ACTIVE, or ERROR with Nova's fault when no host can take the flavor."""
        await asyncio.sleep(self.step)
        if server.flavor.vcpus > self.host_vcpus:
            server.status = "ERROR"
            server.fault = {
                "code": 500,
                "message": "No valid host was found. There are not enough hosts available.",
                "details": "nova.exception.NoValidHost",
                "created": now(),
            }
            self.release_volumes(server)
            return
        server.address = next(self.addresses)
        boot = ServerBoot(
            name=server.name,
            image_path=server.image.path,
            user_data=server.user_data,
            meta_data={"instance-id": server.id, "local-hostname": server.name},
            cpus=server.flavor.vcpus,
            memory_mb=server.flavor.ram,
            volumes=[self.volumes[v].path for v in server.volumes],
            volume_serials=[v[:20] for v in server.volumes],
            address=server.address,
        )
        try:
            server.machine = await self.driver.boot(boot)
        except Exception as error:  # the machine could not start: Nova's ERROR
            server.status = "ERROR"
            server.fault = {"code": 500, "message": f"Build of instance failed: {error}",
                            "created": now()}
            self.release_volumes(server)
            return
        if server.id not in self.servers:  # deleted while it booted
            await server.machine.stop()
            return
        if getattr(server.machine, "stays_in_build", False):
            return
        for volume_id in server.volumes:
            self.volumes[volume_id].status = "in-use"
        server.status = "ACTIVE"

    def release_volumes(self, server: Server) -> None:
        for volume_id in server.volumes:
            volume = self.volumes.get(volume_id)
            if volume is not None and volume.attached_to == server.id:
                volume.status, volume.attached_to = "available", None

    async def delete_server(self, server: Server) -> None:
        self.servers.pop(server.id, None)
        if server.machine is not None:
            await server.machine.stop()
        self.release_volumes(server)

    async def console(self, server: Server, length: int | None) -> str:
        text = await server.machine.console_log() if server.machine is not None else ""
        lines = text.splitlines()
        if length is not None:
            lines = lines[-length:] if length > 0 else []
        return "\n".join(lines) + ("\n" if lines else "")

    # ---- Cinder ---------------------------------------------------------------------

    def create_volume(self, project_id: str, request: dict[str, Any]) -> Volume:
        size = int(request.get("size", 0))
        used = sum(v.size for v in self.volumes.values())
        if len(self.volumes) + 1 > self.quota["volumes"]:
            raise ApiFault(
                413,
                "overLimit",
                f"VolumeLimitExceeded: Maximum number of volumes allowed "
                f"({self.quota['volumes']}) exceeded for quota 'volumes'.",
            )
        if used + size > self.quota["gigabytes"]:
            raise ApiFault(
                413,
                "overLimit",
                f"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
                f"gigabytes quota. Requested {size}G, quota is {self.quota['gigabytes']}G and "
                f"{used}G has been consumed.",
            )
        volume = Volume(
            name=request.get("name") or "",
            size=size,
            project_id=project_id,
            metadata=dict(request.get("metadata") or {}),
        )
        volume.path = self.driver.volume_path(volume.id, size)
        self.volumes[volume.id] = volume
        self.spawn(self._becomes_available(volume))
        return volume

    async def _becomes_available(self, volume: Volume) -> None:
        await asyncio.sleep(self.step)
        if volume.status == "creating":
            volume.status = "available"

    # ---- lookups --------------------------------------------------------------------

    @staticmethod
    def find(table: dict[str, Any], key: str | None, what: str, status: int, kind: str):
        found = table.get(key or "")
        if found is None:
            found = next((item for item in table.values() if item.name == key), None)
        if found is None:
            raise ApiFault(status, kind, f"{what.capitalize()} {key} could not be found.")
        return found
