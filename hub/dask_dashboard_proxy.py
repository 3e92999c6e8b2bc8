"""Cluster dashboards through the gateway, for their owner only.

dask-gateway's own proxy forwards ``/clusters/<name>/`` to a scheduler's dashboard with
no authentication (dask/dask-gateway#570). KioskHub's backend routes that path to the
gateway's application instead, where ``forward_dashboard`` authenticates the caller as
the API does (a JupyterHub token, then the gateway's cookie; a browser with neither signs in
with the hub's OAuth, ``dask_dashboard_login``), answers 404 for any cluster that is not
the caller's own, and forwards HTTP and websockets to the dashboard
with the cluster's dashboard key (``kioskhub.hub.dask_dashboard_guard``), without the
caller's token or cookies.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from .dask_dashboard_guard import DASHBOARD_KEY_HEADER, dashboard_key
from .dask_dashboard_login import CALLBACK_ROUTE, HubLogin, is_page_load, not_signed_in

SESSION = web.AppKey("kioskhub_dashboard_session", aiohttp.ClientSession)
LOGIN = web.AppKey("kioskhub_dashboard_login", HubLogin)
ROUTE = "/clusters/{cluster_name}/{tail:.*}"

_NOT_FORWARDED = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "set-cookie",
        DASHBOARD_KEY_HEADER.lower(),
    }
)


def forwarded_headers(headers) -> dict[str, str]:
    """``headers`` less hop-by-hop ones, credentials and any dashboard key."""
    return {k: v for k, v in headers.items() if k.lower() not in _NOT_FORWARDED}


def add_dashboard_routes(app: web.Application, login: HubLogin | None = None) -> None:
    """Serve ``/clusters/<name>/...`` from ``app`` (the gateway's aiohttp application), and
    the OAuth callback of ``login`` (default: the hub-managed service's, when there is one).
    """
    app.router.add_route("*", ROUTE, forward_dashboard)
    login = login or HubLogin.from_environment()
    if login is not None:
        app[LOGIN] = login
        app.router.add_get(CALLBACK_ROUTE, login.finish)

    async def open_session(app):
        app[SESSION] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(open_session)


async def forward_dashboard(request: web.Request) -> web.StreamResponse:
    try:
        user, cookie = await request.app["authenticator"].dashboard_user(request)
    except web.HTTPUnauthorized:
        login = request.app.get(LOGIN)
        if login is not None and is_page_load(request):
            return login.start(request)
        raise not_signed_in() from None
    name = request.match_info["cluster_name"]
    cluster = request.app["backend"].db.get_cluster(name)
    if cluster is None or cluster.username != user.name or not cluster.dashboard_address:
        # The same answer for another user's cluster as for none: names stay private.
        raise web.HTTPNotFound(text=f"You have no running Dask cluster named {name}.\n")
    url = f"{cluster.dashboard_address}/{request.match_info['tail']}"
    if request.query_string:
        url = f"{url}?{request.query_string}"
    headers = forwarded_headers(request.headers)
    headers[DASHBOARD_KEY_HEADER] = dashboard_key(cluster.token)
    session = request.app[SESSION]
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _forward_websocket(request, session, url, headers, cookie)
    async with session.request(
        request.method,
        url,
        headers=headers,
        data=request.content if request.body_exists else None,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(
            status=upstream.status, headers=forwarded_headers(upstream.headers)
        )
        cookie(response)
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(2**16):
            await response.write(chunk)
        await response.write_eof()
        return response


async def _forward_websocket(request, session, url, headers, cookie) -> web.WebSocketResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    protocols = [p for p in protocols if p]
    headers.pop("Sec-WebSocket-Protocol", None)
    async with session.ws_connect(url, headers=headers, protocols=protocols) as upstream:
        downstream = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else ()
        )
        cookie(downstream)
        await downstream.prepare(request)
        pumps = [
            asyncio.ensure_future(_pump(downstream, upstream)),
            asyncio.ensure_future(_pump(upstream, downstream)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await downstream.close()
        return downstream


async def _pump(source, target) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await target.send_bytes(message.data)
        else:
            break
