"""A user's Dask clusters live as long as their server: stop them when the server stops.

The spawner calls ``stop_user_clusters`` from ``stop()``, while the server's own API token
is still valid: the gateway sees the user themselves asking, so no admin rights are
involved. Two calls of dask-gateway's REST API (list, then DELETE each) with tornado's
async client, which the hub already runs on; importing the ``dask_gateway`` client (and
with it ``distributed``) into the hub process is not worth two requests.
"""

from __future__ import annotations

import json
import logging

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from kioskhub.hub.schema.dask import gateway_addresses
from kioskhub.hub.schema.site import Site

TIMEOUT = 10.0

log = logging.getLogger("JupyterHub")


async def stop_user_clusters(site: Site, token: str | None, owner: str) -> list[str]:
    """Stop every running or pending cluster of the token's user; return their names.

    Never raises: a gateway that is down or slow must not keep a server from stopping
    (its clusters then end at their idle timeout, or when the gateway stops).
    """
    if not site.dask.enabled or not token:
        return []
    api = f"{gateway_addresses(site).internal}/api/v1/clusters/"
    headers = {"Authorization": f"jupyterhub {token}"}
    client = AsyncHTTPClient()
    try:
        listing = await client.fetch(
            api, headers=headers, request_timeout=TIMEOUT, connect_timeout=TIMEOUT
        )
        names = sorted(json.loads(listing.body))
        for name in names:
            await client.fetch(
                f"{api}{name}", method="DELETE", headers=headers, request_timeout=TIMEOUT
            )
    except (OSError, HTTPClientError, ValueError) as error:
        log.warning("Could not stop the Dask clusters of %s: %s", owner, error)
        return []
    if names:
        log.info("Stopped the Dask clusters of %s with their server: %s", owner, ", ".join(names))
    return names
