"""The OpenStack backend's calls to the cloud, through openstacksdk.

Each function here is synchronous and does the network I/O of one step; the spawner runs them
in a thread (``asyncio.to_thread``), never on the hub's event loop. A refusal by the cloud
becomes ``CloudError`` with the HTTP status and the cloud's own message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import openstack
from openstack import exceptions
from openstack.config import OpenStackConfig

from kioskhub.hub.schema.openstack import OpenStackSettings

T = TypeVar("T")
VOLUME_WAIT_SECONDS = 120


class CloudError(Exception):
    """The cloud refused or failed a request; ``status`` is its HTTP status (or None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServerStatus:
    status: str
    """Nova's status: BUILD, ACTIVE, ERROR, SHUTOFF, ..."""
    fault: dict[str, Any] | None
    addresses: dict[str, list[dict[str, Any]]]


def connect(settings: OpenStackSettings) -> openstack.connection.Connection:
    """A connection as ``settings`` say: a clouds.yaml entry, or application credentials."""
    if settings.application_credential is not None:
        credential = settings.application_credential
        try:
            secret = credential.secret_file.read_text().strip()
        except OSError as error:
            raise CloudError(
                f"Cannot read openstack.application_credential.secret_file: {error}"
            ) from None
        extra = {"region_name": credential.region} if credential.region else {}
        return openstack.connect(
            auth_type="v3applicationcredential",
            auth_url=credential.auth_url,
            application_credential_id=credential.id,
            application_credential_secret=secret,
            **extra,
        )
    files = [str(settings.clouds_yaml)] if settings.clouds_yaml else None
    try:
        region = OpenStackConfig(config_files=files).get_one(cloud=settings.cloud)
    except exceptions.ConfigException as error:
        raise CloudError(f"openstack.cloud {settings.cloud!r}: {error}") from None
    return openstack.connection.Connection(config=region)


def calling(step: Callable[[], T]) -> T:
    """Run ``step``; the cloud's refusals become CloudError with its message."""
    try:
        return step()
    except exceptions.HttpException as error:
        message = error.details or error.message or str(error)
        raise CloudError(str(message), error.status_code) from None
    except exceptions.SDKException as error:
        raise CloudError(str(error)) from None


def find_id(finder: Callable[..., Any], name: str, what: str) -> str:
    found = calling(lambda: finder(name, ignore_missing=True))
    if found is None:
        raise CloudError(f"The {what} {name!r} was not found in the cloud.", 404)
    return found.id


def find_flavor(conn, name: str) -> str:
    return find_id(conn.compute.find_flavor, name, "flavor")


def find_image(conn, name: str) -> str:
    return find_id(conn.image.find_image, name, "image")


def find_network(conn, name: str) -> str | None:
    return find_id(conn.network.find_network, name, "network") if name else None


def ensure_security_group(conn, name: str, rule: dict[str, Any]) -> str:
    """The id of the security group ``name``, made with ``rule`` (its only ingress rule)
    where it is missing; an existing group gets the rule if it lacks it."""
    group = calling(lambda: conn.network.find_security_group(name, ignore_missing=True))
    if group is None:
        group = calling(
            lambda: conn.network.create_security_group(
                name=name, description="KioskHub's user servers: the hub reaches their port"
            )
        )
    wanted = {**rule, "security_group_id": group.id}
    rules = calling(lambda: list(conn.network.security_group_rules(security_group_id=group.id)))
    keys = ("direction", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix")
    if not any(all(getattr(r, k) == wanted[k] for k in keys) for r in rules):
        calling(lambda: conn.network.create_security_group_rule(**wanted))
    return group.id


def ensure_home_volume(
    conn, name: str, size_gb: int, volume_type: str | None, metadata: dict[str, str]
) -> tuple[str, bool]:
    """The id of the user's home volume ``name`` once it is available, and whether it was
    made now (blank: the VM formats it)."""
    found = calling(lambda: list(conn.block_storage.volumes(details=True, name=name)))
    made = not found
    if found:
        volume = found[0]
    else:
        extra = {"volume_type": volume_type} if volume_type else {}
        volume = calling(
            lambda: conn.block_storage.create_volume(
                name=name, size=size_gb, metadata=metadata, **extra
            )
        )
    deadline = time.monotonic() + VOLUME_WAIT_SECONDS
    while volume.status != "available":
        if volume.status in ("error", "error_restoring", "error_extending"):
            raise CloudError(f"Your home volume {name} is in the state {volume.status}.")
        if time.monotonic() > deadline:
            raise CloudError(
                f"Your home volume {name} is still {volume.status} after "
                f"{VOLUME_WAIT_SECONDS} s (attached to another VM?)."
            )
        time.sleep(0.5)
        volume = calling(partial(conn.block_storage.get_volume, volume.id))
    return volume.id, made


def create_server(conn, request: dict[str, Any]) -> str:
    return calling(lambda: conn.compute.create_server(**request)).id


def server_status(conn, server_id: str) -> ServerStatus | None:
    """The server's status, or None when it is gone."""
    server = calling(lambda: conn.compute.find_server(server_id, ignore_missing=True))
    if server is None:
        return None
    return ServerStatus(server.status, server.fault, dict(server.addresses or {}))


def delete_server(conn, server_id: str, wait_seconds: float = 120) -> None:
    """Delete the server and wait until it is gone (its volumes are free again then)."""
    calling(lambda: conn.compute.delete_server(server_id, ignore_missing=True))
    deadline = time.monotonic() + wait_seconds
    while calling(lambda: conn.compute.find_server(server_id, ignore_missing=True)):
        if time.monotonic() > deadline:
            raise CloudError(f"The VM {server_id} was not deleted in {wait_seconds} s.")
        time.sleep(0.5)


def console_log(conn, server_id: str, lines: int) -> str:
    answer = calling(lambda: conn.compute.get_server_console_output(server_id, length=lines))
    return (answer or {}).get("output", "")


def free_compute(conn) -> dict[str, int]:
    """What the project's compute quota leaves: instances, cores, RAM (MiB); -1 unlimited."""
    limits = calling(lambda: conn.compute.get_limits()).absolute

    def left(maximum, used):
        return -1 if maximum is None or maximum < 0 else max(maximum - (used or 0), 0)

    return {
        "instances": left(limits.instances, limits.instances_used),
        "cores": left(limits.total_cores, limits.total_cores_used),
        "ram": left(limits.total_ram, limits.total_ram_used),
    }


def flavor_size(conn, name: str) -> dict[str, int]:
    """A flavor's vcpus, RAM (MiB) and disk (GB)."""
    flavor = calling(lambda: conn.compute.find_flavor(name, ignore_missing=False))
    return {"vcpus": flavor.vcpus, "ram": flavor.ram, "disk": flavor.disk}
