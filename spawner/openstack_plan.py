"""Pure choices of the OpenStack backend: names, the Nova server request, the security group's
rule, what a VM runs, the addresses it reaches, and what a user is told when the cloud fails.

Nothing here talks to the cloud; ``openstack_cloud`` does, and ``openstack`` (the spawner)
wires them.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kubespawner.slugs import safe_slug

from kioskhub.hub.schema.openstack import OpenStackSettings, flavor_of, image_of

from .launch_spec import ChoiceError, LaunchSpec
from .openstack_cloud_init import FAILURE_MARKER
from .podman_plan import LOOPBACK_HOSTS, POD_REACHED_ADDRESSES

STATE_KEYS = ("server_id", "volume_id", "address")
CONSOLE_LINES = 20


@dataclass(frozen=True)
class VmNames:
    server: str
    """The Nova server of one user server (hub tag, user, server name)."""
    volume: str
    """The user's Cinder home volume (one per user, kept across their VMs)."""


def vm_names(username: str, server_name: str, hub_tag: str) -> VmNames:
    user = safe_slug(username)
    suffix = f"-{safe_slug(server_name)}" if server_name else ""
    return VmNames(server=f"kh-{hub_tag}-{user}{suffix}", volume=f"kh-{hub_tag}-home-{user}")


@dataclass(frozen=True)
class VmPlan:
    """What a user's VM boots: the flavor, the image, and how the server runs in it."""

    flavor: str
    image: str
    container_image: str | None
    """The environment's container image (the generic image runs it with podman), or None:
    the Glance image has the environment."""
    singleuser: str


def vm_plan(spec: LaunchSpec, settings: OpenStackSettings, own_image: str | None) -> VmPlan:
    """The flavor and image of ``spec``'s VM; ChoiceError where the site gave none.

    ``own_image`` is the container image of KioskHub's own environment (``pods.image``)."""
    flavor = flavor_of(settings, spec.profile)
    if flavor is None:
        raise ChoiceError(
            f"The profile {spec.profile!r} has no OpenStack flavor (openstack.flavors); "
            "choose another profile or ask the site's admins."
        )
    mapped = image_of(settings, spec.environment.name)
    if mapped is not None:
        return VmPlan(flavor, mapped.image, None, mapped.singleuser)
    container = spec.environment.image or own_image
    if not container:
        raise ChoiceError(
            f"The environment {spec.environment.name!r} has neither a Glance image "
            "(openstack.images) nor a container image (pods.image) to run in a VM; ask "
            "the site's admins."
        )
    if not settings.image:
        raise ChoiceError(
            f"The environment {spec.environment.name!r} runs in a container, but the site "
            "names no generic image (openstack.image) to run it in; ask the site's admins."
        )
    return VmPlan(flavor, settings.image, container, "jupyterhub-singleuser")


def vm_reachable_env(env: dict[str, str], hub_address: str) -> dict[str, str]:
    """``env`` with the hub's loopback addresses replaced by ``hub_address``, where a VM
    reaches the hub (its API, the Dask Gateway, the gallery)."""
    fixed = dict(env)
    for key in POD_REACHED_ADDRESSES:
        if key in fixed:
            parts = urlsplit(fixed[key])
            if parts.hostname in LOOPBACK_HOSTS:
                netloc = hub_address + (f":{parts.port}" if parts.port else "")
                fixed[key] = urlunsplit(parts._replace(netloc=netloc))
    return fixed


def server_request(
    names: VmNames,
    flavor_id: str,
    image_id: str,
    network_id: str | None,
    security_group: str,
    user_data: str,
    volume_id: str,
    metadata: dict[str, str],
    key_name: str | None = None,
) -> dict[str, Any]:
    """The arguments of openstacksdk's ``create_server``: the user's home volume attached
    (kept when the server is deleted), the user-data base64-encoded as Nova takes it."""
    request: dict[str, Any] = {
        "name": names.server,
        "flavor_id": flavor_id,
        "image_id": image_id,
        "networks": [{"uuid": network_id}] if network_id else "auto",
        "security_groups": [{"name": security_group}],
        "user_data": base64.b64encode(user_data.encode()).decode(),
        "metadata": metadata,
        "block_device_mapping_v2": [
            {
                "boot_index": 0,
                "uuid": image_id,
                "source_type": "image",
                "destination_type": "local",
                "delete_on_termination": True,
            },
            {
                "boot_index": -1,
                "uuid": volume_id,
                "source_type": "volume",
                "destination_type": "volume",
                "delete_on_termination": False,
            },
        ],
    }
    if key_name:
        request["key_name"] = key_name
    return request


def port_rule(security_group_id: str, port: int, cidr: str) -> dict[str, Any]:
    """The one ingress rule of the servers' security group: the hub and proxy to the port."""
    return {
        "security_group_id": security_group_id,
        "direction": "ingress",
        "ethertype": "IPv6" if ":" in cidr else "IPv4",
        "protocol": "tcp",
        "port_range_min": port,
        "port_range_max": port,
        "remote_ip_prefix": cidr,
        "description": "KioskHub: the hub and the proxy reach the user's server",
    }


def server_address(addresses: dict[str, list[dict[str, Any]]], network: str) -> str | None:
    """The server's fixed address on ``network`` (or on its only network)."""
    entries = addresses.get(network) if network else None
    if entries is None and len(addresses) == 1:
        entries = next(iter(addresses.values()))
    for entry in entries or ():
        if entry.get("OS-EXT-IPS:type", "fixed") == "fixed":
            return entry["addr"]
    return None


def fault_message(fault: dict[str, Any] | None, flavor: str) -> str:
    """What the user is told about a server that went to ERROR, from Nova's fault."""
    reason = (fault or {}).get("message", "").strip() or "the cloud gave no reason"
    if "No valid host" in reason:
        return (
            f"The cloud has no room for a {flavor} VM right now (Nova: {reason}). Try a "
            "smaller profile, or try again later."
        )
    return f"Your VM could not be built (Nova: {reason})."


QUOTA_WORDS = re.compile(r"quota|limit ?exceeded|exceeds? .*allowed", re.IGNORECASE)


def cloud_refusal(what: str, status: int | None, message: str) -> str:
    """What the user is told when the cloud refuses to make ``what`` (403/413: a quota)."""
    text = message.strip() or f"HTTP {status}"
    if status in (403, 413) or QUOTA_WORDS.search(text):
        return f"The cloud's quota is exhausted, so no {what} could be made ({text})."
    return f"The cloud refused to make your {what} ({text})."


def console_failure(console: str, lines: int = CONSOLE_LINES) -> str | None:
    """The console's last lines if the VM's server failed to start (cloud-init's service
    printed ``FAILURE_MARKER``), else None."""
    if FAILURE_MARKER not in console:
        return None
    return "\n".join(console.rstrip().splitlines()[-lines:])


def last_lines(console: str, lines: int = CONSOLE_LINES) -> str:
    return "\n".join(console.rstrip().splitlines()[-lines:]) or "(the console is empty)"
