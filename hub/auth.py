"""Sign-in for the embedded default: a shared password with any valid username."""

from __future__ import annotations

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from tornado import web

from kioskhub.hub.schema.site import check_username


class KioskAuthenticator(SharedPasswordAuthenticator):
    """SharedPasswordAuthenticator that explains why a username is refused.

    Usernames are normalised (trimmed, lowercased) and must match
    ``schema.site.USERNAME_PATTERN``; a bad one gets a message on the login page instead of
    the generic "Invalid username or password".
    """

    async def authenticate(self, handler, data):
        username = self.normalize_username((data or {}).get("username", "").strip())
        try:
            check_username(username)
        except ValueError as exc:
            raise web.HTTPError(400, "%s", str(exc).capitalize()) from None
        return await super().authenticate(handler, {**data, "username": username})
