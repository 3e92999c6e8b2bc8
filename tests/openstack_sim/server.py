"""The simulated cloud on 127.0.0.1 at a free port, registered in a real Keystone's catalog.

``with OpenStackSimulation(keystone, driver) as cloud:`` serves Nova (``/compute/v2.1``),
Neutron (``/network``), Glance (``/image``) and Cinder (``/volume/v3/<project>``) and puts
their endpoints into Keystone's catalog once (they stay there for later simulations on the
same Keystone, whose endpoints are then updated). Setup methods (``add_flavor``, ...) run on
the simulation's loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from tests.support.keystone import REGION, Keystone
from tests.support.threaded_api import ThreadedAPI

from .api import ROUTES, NotFound, validate_async
from .machines import IdleMachines, MachineDriver
from .model import Cloud, Flavor, Image

SERVICES = (
    ("compute", "nova", "/compute/v2.1"),
    ("network", "neutron", "/network"),
    ("image", "glance", "/image"),
    ("block-storage", "cinder", "/volume/v3/$(project_id)s"),
)


class OpenStackSimulation(ThreadedAPI):
    name = "OpenStack simulation"
    routes = ROUTES
    not_found = NotFound

    def __init__(
        self,
        keystone: Keystone,
        driver: MachineDriver | None = None,
        *,
        network_name: str = "lab-net",
        page_size: int = 2,
        host_vcpus: int = 16,
    ) -> None:
        super().__init__()
        self.keystone = keystone
        self.cloud = Cloud(driver or IdleMachines(), host_vcpus=host_vcpus)
        self.network_name = network_name
        self.page_size = page_size
        """The most items a list answers with: small, so clients follow next links."""
        self.requests: list[tuple[str, str]] = []
        self._tokens: dict[str, str | None] = {}

    def start(self):
        super().start()
        self.register_in_catalog()
        self.call(
            lambda: self.cloud.networks.setdefault(
                "net-1",
                {"id": "net-1", "name": self.network_name, "status": "ACTIVE",
                 "subnets": [], "admin_state_up": True, "shared": False,
                 "project_id": self.keystone.project_id},
            )
        )
        return self

    def register_in_catalog(self) -> None:
        admin = self.keystone.admin()
        for service_type, name, path in SERVICES:
            url = self.url + path
            service = next(iter(admin.identity.services(type=service_type)), None)
            if service is None:
                service = admin.identity.create_service(type=service_type, name=name)
            endpoints = list(admin.identity.endpoints(service_id=service.id))
            if endpoints:
                admin.identity.update_endpoint(endpoints[0], url=url)
            else:
                admin.identity.create_endpoint(
                    service_id=service.id, interface="public", url=url, region_id=REGION
                )

    async def validate(self, token: str) -> str | None:
        if token not in self._tokens:
            self._tokens[token] = await validate_async(self.keystone.url, token)
        return self._tokens[token]

    # ---- setup and inspection, on the simulation's loop -------------------------------

    def call(self, function: Callable[..., Any], *args) -> Any:
        async def run():
            return function(*args)

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def add_flavor(self, name: str, vcpus: int, ram_mb: int, disk_gb: int, **extra_specs):
        flavor = Flavor(name, vcpus, ram_mb, disk_gb, dict(extra_specs))
        self.call(self.cloud.flavors.__setitem__, flavor.id, flavor)
        return flavor

    def add_image(self, name: str, path: str = "") -> Image:
        image = Image(name, path)
        self.call(self.cloud.images.__setitem__, image.id, image)
        return image

    def set_quota(self, **limits: int) -> None:
        self.call(self.cloud.quota.update, limits)

    def servers(self) -> list[dict[str, Any]]:
        return self.call(
            lambda: [s.view(self.network_name) for s in self.cloud.servers.values()]
        )

    def volumes(self) -> list[dict[str, Any]]:
        return self.call(lambda: [v.view() for v in self.cloud.volumes.values()])

    def security_groups(self) -> list[dict[str, Any]]:
        return self.call(lambda: [g.view() for g in self.cloud.security_groups.values()])

    def user_data_of(self, server_id: str) -> str:
        return self.call(lambda: self.cloud.servers[server_id].user_data)

    def delete_everything(self) -> None:
        async def clear():
            for server in list(self.cloud.servers.values()):
                await self.cloud.delete_server(server)
            self.cloud.volumes.clear()
            self.cloud.security_groups.clear()

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(clear(), self._loop).result(30)

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())
