"""The HTTP side of the simulated cloud: Nova, Neutron, Glance and Cinder in their documented
shape (version documents for discovery, microversion headers, fault bodies, pagination with
``limit``/``marker`` and next links), each request's token validated by the real Keystone.

Only what openstacksdk uses for KioskHub's backend is here; anything else is a 404 in the
service's shape, so a client that strays shows up in the test's failure.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import requests
from tornado.web import RequestHandler

from .model import ApiFault, Cloud

NOVA_VERSIONS = ("2.1", "2.96")
CINDER_VERSIONS = ("3.0", "3.70")


def version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


class CloudHandler(RequestHandler):
    """Base of every handler: Keystone's token, JSON in and out, faults in shape."""

    service = ""
    fault_style = "nova"

    def initialize(self, simulation) -> None:
        self.simulation = simulation
        self.cloud: Cloud = simulation.cloud
        self.project_id = ""

    def check_xsrf_cookie(self) -> None:
        pass

    async def prepare(self) -> None:
        self.simulation.requests.append((self.request.method, self.request.path))
        if self.request.path.rstrip("/").count("/") <= 2 and self.request.method == "GET":
            return  # version documents need no token
        token = self.request.headers.get("X-Auth-Token", "")
        project = await self.simulation.validate(token)
        if project is None:
            self.fail(ApiFault(401, "unauthorized", "The request you have made requires "
                               "authentication."))
            return
        self.project_id = project

    def body(self) -> dict[str, Any]:
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError:
            raise ApiFault(400, "badRequest", "Malformed request body") from None

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        if value is None:
            self.finish()
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))

    def fail(self, fault: ApiFault) -> None:
        if self.fault_style == "neutron":
            kind = {404: "NotFound", 409: "Conflict", 400: "BadRequest"}.get(fault.status, "")
            body = {"NeutronError": {"type": kind, "message": fault.message, "detail": ""}}
        else:
            body = fault.body()
        self.reply(body, fault.status)

    def page(self, items: list[Any], key: str, view) -> dict[str, Any]:
        """One page of ``items`` after ``marker``, at most ``limit`` (and the sim's page size)
        long, with the service's link to the next page."""
        marker = self.get_argument("marker", None)
        limit = int(self.get_argument("limit", "1000"))
        limit = min(limit, self.simulation.page_size)
        if marker:
            ids = [item.id for item in items]
            if marker not in ids:
                raise ApiFault(400, "badRequest", f"marker [{marker}] not found")
            items = items[ids.index(marker) + 1 :]
        chosen = items[:limit]
        result: dict[str, Any] = {key: [view(item) for item in chosen]}
        if len(items) > limit:
            query = {k: v[-1].decode() for k, v in self.request.arguments.items()}
            query.update(marker=chosen[-1].id, limit=str(limit))
            from urllib.parse import urlencode

            href = f"{self.request.protocol}://{self.request.host}{self.request.path}"
            href += "?" + urlencode(query)
            if self.fault_style == "glance":
                result["next"] = self.request.path + "?" + urlencode(query)
            else:
                result[f"{key}_links"] = [{"rel": "next", "href": href}]
        return result

    def filtered(self, items, *names: str):
        for name in names:
            wanted = self.get_argument(name, None)
            if wanted is not None:
                items = [item for item in items if getattr(item, name) == wanted]
        return list(items)

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, ApiFault):
            self.fail(error)
        else:
            self.fail(ApiFault(status_code, "computeFault", "The server has either erred"))

    def _handle_request_exception(self, error: BaseException) -> None:
        if isinstance(error, ApiFault):
            if not self._finished:
                self.fail(error)
            return
        super()._handle_request_exception(error)


class NovaHandler(CloudHandler):
    service = "compute"

    def set_default_headers(self) -> None:
        asked = self.request.headers.get("OpenStack-API-Version", "")
        match = re.fullmatch(r"compute (\d+\.\d+|latest)", asked.strip())
        version = NOVA_VERSIONS[0]
        if match:
            version = NOVA_VERSIONS[1] if match.group(1) == "latest" else match.group(1)
        self.microversion = version
        self.set_header("OpenStack-API-Version", f"compute {version}")
        self.set_header("X-OpenStack-Nova-API-Version", version)
        self.set_header("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")

    async def prepare(self) -> None:
        low, high = map(version_tuple, NOVA_VERSIONS)
        if not low <= version_tuple(self.microversion) <= high:
            self.fail(ApiFault(406, "notAcceptable", f"Version {self.microversion} is not "
                               "supported by the API. Minimum is 2.1 and maximum is 2.96."))
            return
        await super().prepare()

    def server(self, server_id: str):
        server = self.cloud.servers.get(server_id)
        if server is None:
            raise ApiFault(404, "itemNotFound", f"Instance {server_id} could not be found.")
        return server

    def server_view(self, server):
        return server.view(self.simulation.network_name)


def version_document(request, path: str, version: str, low: str, high: str) -> dict:
    return {
        "id": f"v{version}",
        "status": "CURRENT",
        "version": high,
        "min_version": low,
        "updated": "2024-01-01T00:00:00Z",
        "links": [{"rel": "self", "href": f"{request.protocol}://{request.host}{path}"}],
    }


class NovaVersions(NovaHandler):
    def get(self):
        document = version_document(self.request, "/compute/v2.1/", "2.1", *NOVA_VERSIONS)
        if self.request.path.rstrip("/").endswith("v2.1"):
            self.reply({"version": document})
        else:
            self.reply({"versions": [document]})


class Flavors(NovaHandler):
    def get(self, detail=None):
        self.reply(self.page(list(self.cloud.flavors.values()), "flavors", lambda f: f.view()))


class OneFlavor(NovaHandler):
    def get(self, flavor_id):
        flavor = self.cloud.flavors.get(flavor_id)
        if flavor is None:
            raise ApiFault(404, "itemNotFound", f"Flavor {flavor_id} could not be found.")
        self.reply({"flavor": flavor.view()})


class Servers(NovaHandler):
    def get(self, detail=None):
        servers = self.filtered(self.cloud.servers.values(), "name", "status")
        self.reply(self.page(servers, "servers", self.server_view))

    def post(self, detail=None):
        request = self.body().get("server")
        if not isinstance(request, dict) or not request.get("name"):
            raise ApiFault(400, "badRequest", "Invalid input for field/attribute server.")
        server = self.cloud.create_server(self.project_id, request)
        self.reply({"server": {"id": server.id, "links": [], "adminPass": "unused",
                               "security_groups": [{"name": n} for n in server.security_groups],
                               "OS-DCF:diskConfig": "MANUAL"}}, 202)


class OneServer(NovaHandler):
    def get(self, server_id):
        self.reply({"server": self.server_view(self.server(server_id))})

    async def delete(self, server_id):
        await self.cloud.delete_server(self.server(server_id))
        self.reply(None, 204)


class ServerAction(NovaHandler):
    async def post(self, server_id):
        server = self.server(server_id)
        action = self.body()
        if "os-getConsoleOutput" in action:
            length = (action["os-getConsoleOutput"] or {}).get("length")
            output = await self.cloud.console(server, int(length) if length else None)
            self.reply({"output": output})
            return
        raise ApiFault(400, "badRequest", f"Unsupported action {', '.join(action)}")


class Limits(NovaHandler):
    def get(self):
        used, quota = self.cloud.usage(), self.cloud.quota
        self.reply(
            {
                "limits": {
                    "rate": [],
                    "absolute": {
                        "maxTotalInstances": quota["instances"],
                        "maxTotalCores": quota["cores"],
                        "maxTotalRAMSize": quota["ram"],
                        "totalInstancesUsed": used["instances"],
                        "totalCoresUsed": used["cores"],
                        "totalRAMUsed": used["ram"],
                        "maxServerMeta": 128,
                        "maxImageMeta": 128,
                        "maxPersonality": 5,
                        "maxPersonalitySize": 10240,
                        "maxTotalKeypairs": 100,
                        "maxServerGroups": 10,
                        "maxServerGroupMembers": 10,
                        "totalServerGroupsUsed": 0,
                        "maxSecurityGroups": -1,
                        "maxSecurityGroupRules": -1,
                        "maxTotalFloatingIps": -1,
                        "totalFloatingIpsUsed": 0,
                        "totalSecurityGroupsUsed": 0,
                    },
                }
            }
        )


class NeutronHandler(CloudHandler):
    service = "network"
    fault_style = "neutron"


class NeutronVersions(NeutronHandler):
    def get(self):
        href = f"{self.request.protocol}://{self.request.host}/network/v2.0/"
        self.reply({"versions": [{"id": "v2.0", "status": "CURRENT",
                                  "links": [{"rel": "self", "href": href}]}]})


class Networks(NeutronHandler):
    def get(self):
        class Net:
            def __init__(self, body):
                self.body, self.id, self.name = body, body["id"], body["name"]

        networks = self.filtered([Net(n) for n in self.cloud.networks.values()], "id", "name")
        self.reply(self.page(networks, "networks", lambda n: n.body))


class OneNetwork(NeutronHandler):
    def get(self, network_id):
        network = self.cloud.networks.get(network_id)
        if network is None:
            raise ApiFault(404, "NotFound", f"Network {network_id} could not be found.")
        self.reply({"network": network})


class SecurityGroups(NeutronHandler):
    def get(self):
        groups = self.filtered(self.cloud.security_groups.values(), "id", "name")
        self.reply(self.page(groups, "security_groups", lambda g: g.view()))

    def post(self):
        from .model import SecurityGroup

        request = self.body().get("security_group") or {}
        group = SecurityGroup(request.get("name", ""), self.project_id,
                              request.get("description", ""))
        for ethertype in ("IPv4", "IPv6"):  # Neutron's default egress rules
            group.rules.append(rule_view(group, {"direction": "egress", "ethertype": ethertype}))
        self.cloud.security_groups[group.id] = group
        self.reply({"security_group": group.view()}, 201)


class OneSecurityGroup(NeutronHandler):
    def get(self, group_id):
        group = self.cloud.security_groups.get(group_id)
        if group is None:
            raise ApiFault(404, "NotFound", f"Security group {group_id} does not exist")
        self.reply({"security_group": group.view()})


def rule_view(group, request: dict[str, Any]) -> dict[str, Any]:
    import uuid

    return {
        "id": str(uuid.uuid4()),
        "security_group_id": group.id,
        "direction": request.get("direction", "ingress"),
        "ethertype": request.get("ethertype", "IPv4"),
        "protocol": request.get("protocol"),
        "port_range_min": request.get("port_range_min"),
        "port_range_max": request.get("port_range_max"),
        "remote_ip_prefix": request.get("remote_ip_prefix"),
        "remote_group_id": request.get("remote_group_id"),
        "description": request.get("description", ""),
        "project_id": group.project_id,
        "tenant_id": group.project_id,
    }


class SecurityGroupRules(NeutronHandler):
    def get(self):
        rules = [r for g in self.cloud.security_groups.values() for r in g.rules]
        wanted = self.get_argument("security_group_id", None)
        if wanted:
            rules = [r for r in rules if r["security_group_id"] == wanted]
        self.reply({"security_group_rules": rules})

    def post(self):
        request = self.body().get("security_group_rule") or {}
        group = self.cloud.security_groups.get(request.get("security_group_id", ""))
        if group is None:
            raise ApiFault(404, "NotFound", "Security group could not be found.")
        rule = rule_view(group, request)
        same = [
            r for r in group.rules
            if {k: v for k, v in r.items() if k not in ("id", "description")}
            == {k: v for k, v in rule.items() if k not in ("id", "description")}
        ]
        if same:
            raise ApiFault(409, "Conflict", f"Security group rule already exists. Rule id is "
                           f"{same[0]['id']}.")
        group.rules.append(rule)
        self.reply({"security_group_rule": rule}, 201)


class GlanceHandler(CloudHandler):
    service = "image"
    fault_style = "glance"


class GlanceVersions(GlanceHandler):
    def get(self):
        href = f"{self.request.protocol}://{self.request.host}/image/v2/"
        self.reply({"versions": [{"id": "v2.16", "status": "CURRENT",
                                  "links": [{"rel": "self", "href": href}]}]})


class Images(GlanceHandler):
    def get(self):
        images = self.filtered(self.cloud.images.values(), "name")
        result = self.page(images, "images", lambda i: i.view())
        self.reply({**result, "first": "/v2/images", "schema": "/v2/schemas/images"})


class OneImage(GlanceHandler):
    def get(self, image_id):
        image = self.cloud.images.get(image_id)
        if image is None:
            raise ApiFault(404, "itemNotFound", f"No image found with ID {image_id}")
        self.reply(image.view())


class CinderHandler(CloudHandler):
    service = "block-storage"

    def set_default_headers(self) -> None:
        asked = self.request.headers.get("OpenStack-API-Version", "")
        match = re.fullmatch(r"volume (\d+\.\d+)", asked.strip())
        version = match.group(1) if match else CINDER_VERSIONS[0]
        self.set_header("OpenStack-API-Version", f"volume {version}")

    def volume(self, volume_id: str):
        volume = self.cloud.volumes.get(volume_id)
        if volume is None:
            raise ApiFault(404, "itemNotFound", f"Volume {volume_id} could not be found.")
        return volume


class CinderVersions(CinderHandler):
    def get(self):
        document = version_document(self.request, "/volume/v3/", "3.0", *CINDER_VERSIONS)
        self.reply({"versions": [document]})


class Volumes(CinderHandler):
    def get(self, project, detail=None):
        volumes = self.filtered(self.cloud.volumes.values(), "name", "status")
        self.reply(self.page(volumes, "volumes", lambda v: v.view()))

    def post(self, project, detail=None):
        request = self.body().get("volume") or {}
        volume = self.cloud.create_volume(self.project_id, request)
        self.reply({"volume": volume.view()}, 202)


class OneVolume(CinderHandler):
    def get(self, project, volume_id):
        self.reply({"volume": self.volume(volume_id).view()})

    def delete(self, project, volume_id):
        volume = self.volume(volume_id)
        if volume.status not in ("available", "error"):
            raise ApiFault(400, "badRequest", "Invalid volume: Volume status must be "
                           "available or error, but current status is: " + volume.status)
        del self.cloud.volumes[volume_id]
        self.reply(None, 202)


class NotFound(CloudHandler):
    async def prepare(self) -> None:
        self.fail(ApiFault(404, "itemNotFound", f"No such resource: {self.request.path}"))


ROUTES = [
    (r"/compute/?", NovaVersions),
    (r"/compute/v2\.1/?", NovaVersions),
    (r"/compute/v2\.1/flavors(/detail)?", Flavors),
    (r"/compute/v2\.1/flavors/([^/]+)", OneFlavor),
    (r"/compute/v2\.1/servers(/detail)?", Servers),
    (r"/compute/v2\.1/servers/([^/]+)", OneServer),
    (r"/compute/v2\.1/servers/([^/]+)/action", ServerAction),
    (r"/compute/v2\.1/limits", Limits),
    (r"/network/?", NeutronVersions),
    (r"/network/v2\.0/networks", Networks),
    (r"/network/v2\.0/networks/([^/]+)", OneNetwork),
    (r"/network/v2\.0/security-groups", SecurityGroups),
    (r"/network/v2\.0/security-groups/([^/]+)", OneSecurityGroup),
    (r"/network/v2\.0/security-group-rules", SecurityGroupRules),
    (r"/image/?", GlanceVersions),
    (r"/image/v2/images", Images),
    (r"/image/v2/images/([^/]+)", OneImage),
    (r"/volume/?", CinderVersions),
    (r"/volume/v3/?", CinderVersions),
    (r"/volume/v3/([^/]+)/volumes(/detail)?", Volumes),
    (r"/volume/v3/([^/]+)/volumes/([^/]+)", OneVolume),
]


def validate_token(keystone_url: str, token: str) -> str | None:
    """The project id of ``token`` as Keystone says (a token may validate itself), or None."""
    if not token:
        return None
    answer = requests.get(
        f"{keystone_url}/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
        timeout=10,
    )
    if answer.status_code != 200:
        return None
    return (answer.json()["token"].get("project") or {}).get("id")


async def validate_async(keystone_url: str, token: str) -> str | None:
    return await asyncio.to_thread(validate_token, keystone_url, token)
