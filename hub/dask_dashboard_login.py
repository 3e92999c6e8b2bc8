"""Signing in to a dashboard from a browser: JupyterHub's OAuth, in the gateway's aiohttp app.

A browser that opens a dashboard link with only the hub's login (no token, no valid
gateway cookie) is sent to the hub's OAuth authorize URL. The hub, where the user is
signed in, sends it back to ``<service prefix>/oauth_callback`` with a code; the gateway
checks the OAuth state against the browser's state cookie, exchanges the code (with its
PKCE verifier) for a token that holds only ``access:services!service=dask-gateway``,
checks that token as it checks an API token, sets its own cookie and sends the browser
back to the page it asked for.

The protocol is JupyterHub's ``HubOAuth`` (state store, PKCE, authorize and token URLs,
code exchange); only the request and cookie handling is aiohttp's. A request that is not
a browser's page load (API clients, scripts, websockets) gets 401 with a message instead.
"""

from __future__ import annotations

import hmac
import os
import secrets
from urllib.parse import urlencode

from aiohttp import web
from jupyterhub.services.auth import HubOAuth
from tornado.web import HTTPError

CALLBACK_ROUTE = "/oauth_callback"
NOT_SIGNED_IN = (
    "Sign in to see this Dask dashboard: open its link in a browser signed in to the hub, "
    "or send a JupyterHub API token (Authorization: token <token>).\n"
)
STATE_REFUSED = (
    "This sign-in did not start in this browser, or it is too old: open the dashboard link again.\n"
)


def browser_protocol(request: web.Request) -> str:
    """The scheme the browser used: the first proxy's ``X-Forwarded-Proto``, else ours."""
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return forwarded.split(",")[0].strip().lower() or request.scheme


def is_page_load(request: web.Request) -> bool:
    """Whether ``request`` is a browser loading a page, which a redirect can sign in."""
    return (
        request.method in ("GET", "HEAD")
        and request.headers.get("Upgrade", "").lower() != "websocket"
        and "text/html" in request.headers.get("Accept", "")
    )


def not_signed_in() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text=NOT_SIGNED_IN, headers={"WWW-Authenticate": "jupyterhub"})


class HubLogin:
    """The OAuth login of the gateway's dashboards, as the hub's OAuth client ``hub_oauth``.

    ``scope`` is what the browser's token may do: reach this service, and (implicitly,
    for every token) identify its user.
    """

    def __init__(self, hub_oauth: HubOAuth, scope: str):
        self.hub_oauth = hub_oauth
        self.scope = scope

    @classmethod
    def from_environment(cls) -> HubLogin | None:
        """The login of a hub-managed service, whose OAuth client JupyterHub describes in
        the environment; None where there is none (browsers then get 401)."""
        service = os.environ.get("JUPYTERHUB_SERVICE_NAME")
        if not (os.environ.get("JUPYTERHUB_CLIENT_ID") and service):
            return None
        return cls(HubOAuth(), f"access:services!service={service}")

    @property
    def prefix(self) -> str:
        """The service's public path prefix, with a trailing slash."""
        return self.hub_oauth.base_url

    def start(self, request: web.Request) -> web.Response:
        """Send the browser to the hub's authorize URL, remembering where it was going.

        Each sign-in has a state cookie of its own, so that dashboard panes loading at
        once do not overwrite each other's state.
        """
        oauth = self.hub_oauth
        verifier, challenge, method = oauth.generate_pkce_code_challenge()
        cookie_name = f"{oauth.oauth_client_id}-oauth-state-{secrets.token_hex(4)}"
        next_url = self.prefix.rstrip("/") + request.raw_path
        state = oauth.generate_state(next_url, cookie_name=cookie_name, code_verifier=verifier)
        query = {
            "client_id": oauth.oauth_client_id,
            "redirect_uri": oauth.oauth_redirect_uri,
            "response_type": "code",
            "scope": self.scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": method,
        }
        response = web.Response(
            status=302, headers={"Location": f"{oauth.oauth_authorization_url}?{urlencode(query)}"}
        )
        response.set_cookie(
            cookie_name,
            state,
            path=self.prefix,
            max_age=oauth.oauth_state_max_age,
            httponly=True,
            samesite="Lax",
            secure=browser_protocol(request) == "https",
        )
        return response

    async def finish(self, request: web.Request) -> web.Response:
        """The OAuth callback: check the state, exchange the code, set the gateway's cookie
        and send the browser back where it was going."""
        query = request.query
        if "error" in query:
            reason = query.get("error_description") or query["error"]
            raise web.HTTPForbidden(text=f"The hub did not sign you in: {reason}\n")
        code, state = query.get("code"), query.get("state")
        if not code or not state:
            raise web.HTTPBadRequest(
                text="This sign-in came back without a code or state: "
                "open the dashboard link again.\n"
            )
        oauth = self.hub_oauth
        verifier = oauth.get_code_verifier(state)
        cookie_name = oauth.get_state_cookie_name(state)
        in_cookie = request.cookies.get(cookie_name, "")
        if verifier is None or not hmac.compare_digest(in_cookie.encode(), state.encode()):
            raise web.HTTPForbidden(text=STATE_REFUSED)
        next_url = oauth.get_next_url(state)
        oauth.clear_oauth_state(state)
        try:
            token = await oauth.token_for_code(code, code_verifier=verifier, sync=False)
        except HTTPError as error:
            raise web.HTTPBadGateway(
                text=f"The hub could not complete this sign-in ({error.log_message}): "
                "open the dashboard link again.\n"
            ) from None
        authenticator = request.app["authenticator"]
        user = await authenticator.user_for_token(token)
        response = web.Response(status=302, headers={"Location": next_url})
        response.del_cookie(cookie_name, path=self.prefix)
        authenticator.set_dashboard_cookie(response, request, user)
        return response
