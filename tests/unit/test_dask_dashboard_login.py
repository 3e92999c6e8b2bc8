"""The browser sign-in of the gateway's dashboards: redirect, state check, cookies.

The gateway's aiohttp routes run for real with JupyterHub's ``HubOAuth``; the hub's token
endpoint is a closed port here, so a callback that passes the state check fails at the
code exchange (502). The whole flow against a real hub is in
tests/integration/test_dask_gateway.py.
"""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import WSServerHandshakeError
from aiohttp import web as aiohttp_web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from dask_gateway_server.models import User
from jupyterhub.services.auth import HubOAuth

from kioskhub.hub.dask_dashboard_login import NOT_SIGNED_IN, STATE_REFUSED, HubLogin
from kioskhub.hub.dask_dashboard_proxy import add_dashboard_routes
from kioskhub.hub.dask_gateway_auth import KioskHubAuthenticator
from tests.unit.test_dask_gateway import free_port

PREFIX = "/services/dask-gateway/"
SCOPE = "access:services!service=dask-gateway"
PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def hub_login() -> HubLogin:
    """The gateway's OAuth client, with the hub's API on a port where nothing listens."""
    oauth = HubOAuth(
        api_token="gateway-token",
        api_url=f"http://127.0.0.1:{free_port()}/hub/api",
        oauth_client_id="service-dask-gateway",
        oauth_redirect_uri=f"{PREFIX}oauth_callback",
        base_url=PREFIX,
        hub_prefix="/hub/",
        hub_host="",
    )
    return HubLogin(oauth, SCOPE)


class AdaOnly(KioskHubAuthenticator):
    """Knows one token, as the hub would: 'ada-token' is ada's."""

    async def authenticate(self, request):
        if self.get_token(request) != "ada-token":
            raise aiohttp_web.HTTPUnauthorized()
        return User("ada")


def gateway_app(login: HubLogin) -> aiohttp_web.Application:
    app = aiohttp_web.Application()
    app["authenticator"] = AdaOnly(cookie_path=PREFIX)
    app["backend"] = SimpleNamespace(db=SimpleNamespace(get_cluster={}.get))  # no clusters
    add_dashboard_routes(app, login)
    return app


def state_cookie(response) -> tuple[str, SimpleCookie]:
    """The name of the state cookie ``response`` sets, and all it sets."""
    cookies = SimpleCookie()
    for header in response.headers.getall("Set-Cookie"):
        cookies.load(header)
    [name] = [n for n in cookies if n.startswith("service-dask-gateway-oauth-state-")]
    return name, cookies


def run(scenario):
    """Run ``scenario(client, login)`` against the gateway's routes; return its result."""
    login = hub_login()

    async def main():
        async with TestClient(TestServer(gateway_app(login))) as client:
            return await scenario(client, login)

    return asyncio.run(main())


@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
def test_a_browser_without_credentials_goes_to_the_hubs_oauth_with_the_least_scope():
    async def scenario(client, login):
        reply = await client.get("/clusters/c1/status?x=1", headers=PAGE, allow_redirects=False)
        return reply, login

    reply, login = run(scenario)

    assert reply.status == 302
    location = urlsplit(reply.headers["Location"])
    query = {k: v for k, [v] in parse_qs(location.query).items()}
    assert location.path == "/hub/api/oauth2/authorize" and not location.netloc
    state = query.pop("state")
    challenge = query.pop("code_challenge")
    assert query == {
        "client_id": "service-dask-gateway",
        "redirect_uri": "/services/dask-gateway/oauth_callback",
        "response_type": "code",
        "scope": "access:services!service=dask-gateway",
        "code_challenge_method": "S256",
    }
    assert len(challenge) == 43
    name, cookies = state_cookie(reply)
    assert cookies[name].value == state
    assert cookies[name]["path"] == PREFIX and cookies[name]["httponly"]
    assert cookies[name]["samesite"] == "Lax" and cookies[name]["max-age"] == "600"
    assert login.hub_oauth.get_next_url(state) == "/services/dask-gateway/clusters/c1/status?x=1"


@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
def test_api_clients_and_websockets_without_credentials_get_401_with_a_message():
    async def scenario(client, login):
        seen = {}
        for who, headers in (("script", {}), ("json", {"Accept": "application/json"})):
            reply = await client.get("/clusters/c1/status", headers=headers)
            seen[who] = (reply.status, await reply.text())
        post = await client.post("/clusters/c1/status", headers=PAGE)
        seen["post"] = post.status
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/clusters/c1/status/ws", headers=PAGE)
        seen["websocket"] = refused.value.status
        return seen

    assert run(scenario) == {
        "script": (401, NOT_SIGNED_IN),
        "json": (401, NOT_SIGNED_IN),
        "post": 401,
        "websocket": 401,
    }


@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
def test_a_callback_whose_state_is_not_this_browsers_is_refused():
    """An attacker sends their own callback link (their code, their state) to a victim,
    or forges the state: each is refused before any code is exchanged."""

    async def scenario(client, login):
        started = await client.get("/clusters/c1/status", headers=PAGE, allow_redirects=False)
        name, cookies = state_cookie(started)
        state = cookies[name].value
        client.session.cookie_jar.clear()  # the victim's browser: no state cookie of this login
        seen = {}
        callback = "/oauth_callback?code=attackers-code&state="
        reply = await client.get(callback + state)
        seen["another browser's state"] = (reply.status, await reply.text())
        # A state cookie forged to match a state the gateway never made.
        forged = {"service-dask-gateway-oauth-state": "made-up", name: "made-up"}
        reply = await client.get(callback + "made-up", cookies=forged)
        seen["a forged state"] = (reply.status, await reply.text())
        reply = await client.get(callback + state, cookies={name: "something-else"})
        seen["a cookie of another value"] = (reply.status, await reply.text())
        # The browser that started the login passes the check and reaches the code exchange
        # (the hub is away here); its state is then spent.
        reply = await client.get(callback + state, cookies={name: state})
        seen["its own browser"] = (reply.status, (await reply.text()).split(" (")[0])
        reply = await client.get(callback + state, cookies={name: state})
        seen["its own browser, again"] = (reply.status, await reply.text())
        reply = await client.get("/oauth_callback?code=c")
        seen["no state"] = reply.status
        reply = await client.get("/oauth_callback?error=access_denied&error_description=No")
        seen["the hub's refusal"] = (reply.status, await reply.text())
        return seen

    assert run(scenario) == {
        "another browser's state": (403, STATE_REFUSED),
        "a forged state": (403, STATE_REFUSED),
        "a cookie of another value": (403, STATE_REFUSED),
        "its own browser": (502, "The hub could not complete this sign-in"),
        "its own browser, again": (403, STATE_REFUSED),
        "no state": 400,
        "the hub's refusal": (403, "The hub did not sign you in: No\n"),
    }


def test_the_gateways_cookie_is_httponly_on_the_services_path_and_secure_behind_https():
    auth = AdaOnly(cookie_path=PREFIX)
    for forwarded in ("http", "https"):
        request = make_mocked_request("GET", "/x", headers={"X-Forwarded-Proto": forwarded})
        response = aiohttp_web.Response()
        auth.set_dashboard_cookie(response, request, User("ada"))
        [(name, cookie)] = response.cookies.items()
        assert name == auth.cookie_name and auth.cache.get(cookie.value).name == "ada"
        assert cookie["path"] == PREFIX and cookie["httponly"] and cookie["samesite"] == "Lax"
        assert bool(cookie["secure"]) is (forwarded == "https")
