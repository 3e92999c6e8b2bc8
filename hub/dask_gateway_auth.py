"""KioskHub's authenticator inside dask-gateway-server: JupyterHub users, by group.

Runs in the gateway service's process; the gateway's config names it as
``kioskhub.hub.dask_gateway_backend.KioskHubAuthenticator`` (re-exported there). Besides
dask-gateway's API check (the caller's JupyterHub token, then a cached cookie), it signs
browsers in to the clusters' dashboards (``dask_dashboard_proxy``): with a token, or after
the hub's OAuth (``dask_dashboard_login``), it sets the gateway's httponly cookie, limited
to the service's path.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from aiohttp import web
from dask_gateway_server.auth import JupyterHubAuthenticator
from traitlets import List, Unicode, default

from .dask_dashboard_login import browser_protocol


class KioskHubAuthenticator(JupyterHubAuthenticator):
    """JupyterHub users, limited to members of ``allowed_groups`` when that is set."""

    allowed_groups = List(
        Unicode(),
        help="JupyterHub groups whose members may use the gateway; empty means everyone.",
        config=True,
    )

    def refusal(self, user) -> str | None:
        """Why ``user`` may not use the gateway, or None when they may."""
        if not self.allowed_groups or user.groups & set(self.allowed_groups):
            return None
        return (
            f"Dask Gateway is only for members of the groups {', '.join(self.allowed_groups)}; "
            f"{user.name} is in {', '.join(sorted(user.groups)) or 'no group'}. "
            "Ask the site's admins to add you."
        )

    def get_token(self, request):
        """The JupyterHub token of ``Authorization: jupyterhub <token>`` or ``token <token>``
        (the scheme JupyterHub itself uses)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme not in ("jupyterhub", "token"):
            return None
        return token.strip() or None

    cookie_path = Unicode(
        help="Path of the gateway's cookie for dashboards (default: the service's prefix).",
        config=True,
    )

    @default("cookie_path")
    def _default_cookie_path(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")

    async def dashboard_user(self, request):
        """The user of a dashboard request, and a function that sets the gateway's cookie
        on the response when the user came with a token.

        Raises 401 without credentials, 403 (with the reason) outside ``allowed_groups``.
        """
        cookie = request.cookies.get(self.cookie_name)
        user = self.cache.get(cookie) if cookie else None
        fresh = user is None
        if fresh:
            user = await self.user_for_token(self.get_token(request))
        refusal = self.refusal(user)
        if refusal:
            raise web.HTTPForbidden(text=refusal + "\n")

        def set_cookie(response):
            if fresh:
                self.set_dashboard_cookie(response, request, user)

        return user, set_cookie

    async def user_for_token(self, token: str | None):
        """The user of a JupyterHub token, checked as for an API request; 401 if none."""
        headers = {"Authorization": f"token {token}"} if token else {}
        found = await self.authenticate(SimpleNamespace(headers=headers))
        return found[0] if isinstance(found, tuple) else found

    def set_dashboard_cookie(self, response, request, user) -> None:
        """Sign ``user``'s browser in to the dashboards: the gateway's httponly cookie."""
        response.set_cookie(
            self.cookie_name,
            self.cache.put(user),
            path=self.cookie_path,
            max_age=self.cache_max_age * 2,
            httponly=True,
            samesite="Lax",
            secure=browser_protocol(request) == "https",
        )

    async def authenticate_and_handle(self, request, handler):
        async def gated(request):
            refusal = self.refusal(request["user"])
            if refusal:
                # dask-gateway's client shows the body's message for 422 (as ValueError), as
                # for the gateway's other refusals; for 403 it shows only "Forbidden".
                return web.json_response({"error": refusal}, status=422)
            return await handler(request)

        return await super().authenticate_and_handle(request, gated)
