"""Whether a starting server is up: the probes that ``SpawnBackend.answering`` uses."""

from __future__ import annotations

import asyncio

from tornado.httpclient import AsyncHTTPClient, HTTPClientError


async def accepts_connections(host: str, port: int) -> bool:
    """Whether something listens at ``host:port`` (a server on this machine is then up)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
    except (TimeoutError, OSError):
        return False
    writer.close()
    return True


async def answers_http(url: str) -> bool:
    """Whether ``url`` gets any HTTP answer (a forwarded port accepts before the server)."""
    try:
        await AsyncHTTPClient().fetch(url, request_timeout=2, raise_error=False)
    except (OSError, HTTPClientError):
        return False
    return True
