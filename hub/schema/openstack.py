"""The ``openstack:`` section of the site config: user servers as OpenStack virtual machines.

It names the cloud (an entry of a clouds.yaml, or Keystone application credentials), the
network and security group of the servers' VMs, the image they boot by default, the address
at which a VM reaches the hub, how long a VM may take to boot, and the Cinder home volume each
user keeps. ``flavors`` maps each resource profile to a Nova flavor (GPU flavors included);
``images`` maps an environment to a Glance image that has it. An environment with no image
of its own boots the default image, whose cloud-init pulls the environment's container image
and runs it with podman, so one built image serves pods and VMs.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from .choices import Name
from .paths import ConfigPath
from .section import Section

OPENSTACK_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$"
"""A name or id of a flavor, image, network or security group."""


class ApplicationCredential(Section):
    """Keystone application credentials: what a site gets from ``openstack application
    credential create``, without a clouds.yaml."""

    auth_url: str = Field(description="Keystone's URL, e.g. https://keystone.example.org:5000/v3.")
    id: str = Field(min_length=1, description="The application credential's id.")
    secret_file: ConfigPath = Field(
        description="A file that holds the credential's secret (one line, readable by the "
        "hub's account only)."
    )
    region: str | None = Field(None, description="The region; empty means the only one.")

    @field_validator("auth_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("expected a URL like https://keystone.example.org:5000/v3")
        return value


class FlavorMapping(Section):
    """The Nova flavor that the resource profile ``profile`` runs on."""

    profile: Name = Field(description="Name of a resource profile (see profiles[].name).")
    flavor: str = Field(
        pattern=OPENSTACK_NAME,
        description="Name or id of the flavor; a GPU profile needs a flavor with its GPUs "
        "(e.g. one with a PCI alias).",
    )


class ImageMapping(Section):
    """A Glance image that has the environment ``environment`` installed."""

    environment: Name = Field(description="Name of an environment (see environments[].name).")
    image: str = Field(
        pattern=OPENSTACK_NAME,
        description="Name or id of the Glance image; it runs jupyterhub-singleuser from "
        "`singleuser` itself, without podman.",
    )
    singleuser: str = Field(
        "/opt/kioskhub/bin/jupyterhub-singleuser",
        pattern=r"^/[^\s]+$",
        description="Where the image keeps jupyterhub-singleuser.",
    )


class OpenStackSettings(Section):
    cloud: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The entry of clouds.yaml that KioskHub signs in with (openstacksdk "
        "reads clouds.yaml from clouds_yaml, else its usual places). Give this or "
        "application_credential.",
    )
    clouds_yaml: ConfigPath | None = Field(
        None, description="The clouds.yaml that holds `cloud`; empty: openstacksdk's places."
    )
    application_credential: ApplicationCredential | None = Field(
        None, description="Keystone application credentials, instead of a clouds.yaml entry."
    )
    network: str = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,254})?$",
        description="Name or id of the network the VMs join; the hub must reach their port "
        "there. Empty: the project's only network.",
    )
    security_group: str = Field(
        "kioskhub-servers",
        pattern=OPENSTACK_NAME,
        description="The security group KioskHub keeps for the VMs: it admits the hub and "
        "the proxy (hub_cidr) to the server's port, and nothing else.",
    )
    hub_address: str = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9a-fA-F:]+\])?$",
        description="The address at which a VM reaches the hub's API and the proxy (an "
        "address of the hub's machine on the VMs' network). Required with the openstack "
        "backend.",
    )
    hub_cidr: str = Field(
        "",
        pattern=r"^([0-9.]+/[0-9]{1,2}|[0-9a-fA-F:]+/[0-9]{1,3})?$",
        description="The addresses the server's port admits (the hub and the proxy), as a "
        "CIDR; empty means hub_address/32.",
    )
    image: str = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,254})?$",
        description="The generic Glance image (Debian with cloud-init and podman) that runs an "
        "environment's container image. Required unless every environment has its own image.",
    )
    images: tuple[ImageMapping, ...] = Field(
        (), description="Environments that have a Glance image of their own."
    )
    flavors: tuple[FlavorMapping, ...] = Field(
        (), description="The flavor of each resource profile; every profile needs one."
    )
    key_name: str | None = Field(
        None, description="A Nova keypair put into each VM, for the site's admins; empty: none."
    )
    boot_timeout: int = Field(
        600,
        ge=10,
        le=7200,
        description="Seconds a VM may take from the request to an answering server (BUILD, "
        "boot, cloud-init); past it the VM is deleted and the start fails.",
    )
    home_volume_size: int = Field(
        10, ge=1, le=65536, description="Size in GB of each user's Cinder home volume."
    )
    home_volume_type: str | None = Field(
        None, description="The Cinder volume type of the homes; empty: the cloud's default."
    )
    server_port: int = Field(
        8888, ge=1024, le=65535, description="The port jupyterhub-singleuser listens on in a VM."
    )

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> OpenStackSettings:
        if self.cloud and self.application_credential:
            raise ValueError("give either cloud or application_credential, not both")
        if self.clouds_yaml and not self.cloud:
            raise ValueError("clouds_yaml needs cloud: the entry of that file to use")
        return self


def openstack_problems(
    settings: OpenStackSettings,
    openstack_profiles: list[str],
    profiles: list[str],
    environments: list[str],
) -> list[str]:
    """What is wrong with ``settings`` given the profiles, environments and those profiles
    whose servers may run on OpenStack (``openstack_profiles``; none: the cloud is unused)."""
    problems = []
    for mapping, key, known in (
        *((m.profile, "flavors", profiles) for m in settings.flavors),
        *((m.environment, "images", environments) for m in settings.images),
    ):
        if mapping not in known:
            problems.append(
                f"openstack.{key}: {mapping} is not a "
                f"{'resource profile' if key == 'flavors' else 'environment'}; they are: "
                f"{', '.join(known)}"
            )
    for key, named in (
        ("flavors", [m.profile for m in settings.flavors]),
        ("images", [m.environment for m in settings.images]),
    ):
        problems += [
            f"openstack.{key}: {name} is listed twice"
            for name in sorted({n for n in named if named.count(n) > 1})
        ]
    if not openstack_profiles:
        return problems
    if not (settings.cloud or settings.application_credential):
        problems.append(
            "openstack: name the cloud (cloud: an entry of clouds.yaml) or give "
            "application_credential, so that KioskHub can sign in to OpenStack"
        )
    if not settings.hub_address:
        problems.append(
            "openstack.hub_address: give the address at which the VMs reach the hub "
            "(an address of this machine on the VMs' network)"
        )
    elif not settings.hub_cidr and not _is_address(settings.hub_address):
        problems.append(
            f"openstack.hub_cidr: hub_address {settings.hub_address} is a host name, so give "
            "the addresses of the hub and the proxy as a CIDR (e.g. 10.0.0.5/32)"
        )
    if not settings.image and len(settings.images) < len(environments):
        problems.append(
            "openstack.image: give the generic image (Debian with cloud-init and podman) "
            "that runs environments without a Glance image of their own"
        )
    unmapped = [name for name in openstack_profiles if flavor_of(settings, name) is None]
    if unmapped:
        problems.append(
            f"openstack.flavors: give a flavor to {', '.join(unmapped)}, which may run on "
            "OpenStack (e.g. - {profile: %s, flavor: m1.medium})" % unmapped[0]
        )
    return problems


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def flavor_of(settings: OpenStackSettings, profile: str) -> str | None:
    """The flavor of ``profile``, or None when the site gave it none."""
    return next((m.flavor for m in settings.flavors if m.profile == profile), None)


def image_of(settings: OpenStackSettings, environment: str) -> ImageMapping | None:
    """The Glance image that has ``environment``, or None: it runs in a container."""
    return next((m for m in settings.images if m.environment == environment), None)


def admitted_cidr(settings: OpenStackSettings) -> str:
    """The addresses the server's port admits: ``hub_cidr``, else the hub's address alone."""
    if settings.hub_cidr:
        return settings.hub_cidr
    address = settings.hub_address.strip("[]")
    return f"{address}/128" if ":" in address else f"{address}/32"
