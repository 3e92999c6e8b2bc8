"""The workshop schedule as a hub-managed service: pre-warming, expiry, pruning, every minute.

A JupyterHub service process (``python -m kioskhub.hub.workshop_schedule``), started and
stopped by the hub, running as root like the other hub-managed services: it makes and
removes system accounts and homes, which the hub process itself never does for
workshops. A separate process keeps that root work and its waits off the hub's event
loop, and its token shows exactly what it may ask of the hub. Its role holds only:

- ``read:servers`` to see when a stopped server is gone;
- ``delete:servers`` to stop participants' servers;
- ``delete:users`` to delete temporary participants (the code deletes only ``ws-…``
  names of the expired event's seats, ``workshop_expiry.is_seat_of``);
- ``groups`` to take lab accounts out of the event's group;
- ``custom:workshops:prewarm`` to ask the hub to start the servers of an event's untaken
  seats (``workshop_prewarm_api``: the hub checks the event and its window, and makes and
  starts only those seats).

It cannot start other servers, create other users or admins, read tokens or impersonate
anyone. It is handed the site (without sign-in secrets) in ``KIOSKHUB_SITE_JSON``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.hub_service import SITE_VARIABLE, site_from_json, site_json
from kioskhub.image_builder.spawn_catalog import CatalogEnvironments

from .workshop_environments import participants_may_launch
from .workshop_expiry import Expiry, prune_collected
from .workshop_prewarm import Prewarm
from .workshop_prewarm_api import PREWARM_SCOPE, prewarm_api_routes

log = logging.getLogger("kioskhub.workshops")

SERVICE_NAME = "workshop-schedule"
SERVICE_SCOPES = ["read:servers", "delete:servers", "delete:users", "groups", PREWARM_SCOPE]
STOP_WAIT_S = 120


def schedule_hub_settings(site: Site, *, python: str) -> dict[str, Any]:
    """The JupyterHub settings that run the schedule as a service, or {} when workshops
    are off."""
    if not site.workshops.enabled:
        return {}
    return {
        "JupyterHub": {
            "services": [
                {
                    "name": SERVICE_NAME,
                    "command": [python, "-m", "kioskhub.hub.workshop_schedule"],
                    "environment": {SITE_VARIABLE: site_json(site)},
                    "cwd": str(site.hub.state_dir),
                    "display": False,
                }
            ],
            "custom_scopes": {
                PREWARM_SCOPE: {
                    "description": "Start the servers of a workshop event's untaken seats "
                    "ahead of its start"
                }
            },
            "extra_handlers": prewarm_api_routes(site),
            "load_roles": [
                {
                    "name": "kioskhub-workshop-schedule",
                    "description": "Pre-warms and ends workshop events: starts untaken "
                    "seats' servers, stops participants' servers, deletes temporary "
                    "participants, empties the event's group",
                    "services": [SERVICE_NAME],
                    "scopes": SERVICE_SCOPES,
                }
            ],
        }
    }


class HubClient:
    """The few REST calls the schedule makes, with the service's token."""

    def __init__(self, api_url: str, token: str):
        self.api_url = api_url.rstrip("/")
        self.headers = {"Authorization": f"token {token}"}
        self.http = AsyncHTTPClient()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = HTTPRequest(
            f"{self.api_url}{path}",
            method=method,
            headers={**self.headers, "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else None,
            allow_nonstandard_methods=True,
            request_timeout=60,
        )
        try:
            reply = await self.http.fetch(request)
        except HTTPClientError as error:
            if error.response is None:
                raise
            reply = error.response
        text = reply.body.decode(errors="replace") if reply.body else ""
        try:
            return reply.code, json.loads(text) if text else None
        except ValueError:
            return reply.code, text

    async def stop_server(self, username: str) -> None:
        """Stop the user's server and wait until it is gone (404: no such user, done)."""
        path = f"/users/{quote(username, safe='')}"
        code, reply = await self.call("DELETE", f"{path}/server")
        if code not in (202, 204, 400, 404):
            raise RuntimeError(f"DELETE {path}/server: {code} {str(reply)[:200]}")
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            code, reply = await self.call("GET", path)
            if code == 404:
                return
            if code != 200:
                raise RuntimeError(f"GET {path}: {code} {str(reply)[:200]}")
            server = (reply.get("servers") or {}).get("")
            if not server and not reply.get("pending"):
                return
            await asyncio.sleep(1)
        raise RuntimeError(f"the server of {username} did not stop within {STOP_WAIT_S} s")

    async def delete_user(self, username: str) -> None:
        code, reply = await self.call("DELETE", f"/users/{quote(username, safe='')}")
        if code not in (204, 404):
            raise RuntimeError(f"deleting the hub user {username}: {code} {str(reply)[:200]}")

    async def prewarm_servers(self, event_id: str) -> dict[str, str]:
        """Ask the hub to start the event's untaken seats' servers; each seat's state."""
        path = f"/workshops/{quote(event_id, safe='')}/prewarm"
        code, reply = await self.call("POST", path, {})
        if code != 202:
            raise RuntimeError(f"POST {path}: {code} {str(reply)[:200]}")
        return reply["servers"]

    async def leave_group(self, group: str, usernames: list[str]) -> None:
        path = f"/groups/{quote(group, safe='')}/users"
        code, reply = await self.call("DELETE", path, {"users": usernames})
        if code not in (200, 404):
            raise RuntimeError(f"DELETE {path}: {code} {str(reply)[:200]}")


async def run_schedule(site: Site, hub: HubClient) -> None:
    """A round every ``workshops.schedule_every`` seconds, until cancelled; a round that
    fails is logged and the next one comes."""
    catalog = CatalogEnvironments(site)
    expiry = Expiry(site, hub)
    prewarm = Prewarm(site, lambda event: participants_may_launch(site, catalog, event), hub)
    while True:
        for name, step in (
            ("pre-warming", prewarm.run_once),
            ("expiry", expiry.run_once),
            ("pruning collected work", lambda: asyncio.to_thread(prune_collected, site)),
        ):
            try:
                await step()
            except Exception:
                log.exception("Workshop schedule: %s failed", name)
        await asyncio.sleep(site.workshops.schedule_every)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s workshop-schedule] %(message)s"
    )
    site = site_from_json(os.environ[SITE_VARIABLE])
    hub = HubClient(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    log.info("Workshop schedule: every %d s", site.workshops.schedule_every)
    asyncio.run(run_schedule(site, hub))
    return 0


if __name__ == "__main__":
    sys.exit(main())
