"""Who calls a hub service's API: the hub's OAuth cookie (with its ``_xsrf``) or an API token.

``TokenOrCookie`` is mixed into the API handlers of the environments and gallery services:
an unauthenticated request gets 403 rather than a redirect to the login page, and a request
that carries a token in its Authorization header skips the xsrf check (another site cannot
forge that header; tornado checks before anyone is authenticated).
"""

from __future__ import annotations

from typing import Any

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

NOT_SIGNED_IN = "sign in to the hub, or send an API token"


class TokenOrCookie(HubOAuthenticated):
    def get_login_url(self):
        raise web.HTTPError(403, NOT_SIGNED_IN)

    def check_xsrf_cookie(self):
        if self.request.headers.get("Authorization", "").startswith(("token ", "Bearer ")):
            return None
        return self.hub_auth.check_xsrf_cookie(self)

    def hub_user(self, refusal: str) -> dict[str, Any]:
        """The calling hub user's model; 403 when no one signed in, or ``refusal`` when a
        service rather than a user calls."""
        model = self.get_current_user()
        if not model:
            raise web.HTTPError(403, NOT_SIGNED_IN)
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, refusal)
        return model
