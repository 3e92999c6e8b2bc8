"""Sign-in for the embedded default: a shared password with any valid, unreserved username."""

from __future__ import annotations

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from jupyterhub.handlers.login import LoginHandler
from traitlets import Set
from traitlets.config import LoggingConfigurable

from kioskhub.hub.schema.site import RESERVED_USERNAMES, check_username


class UsernameRefused(Exception):
    """A username that no one may sign in with; the message says why and what to do."""


class KioskLoginHandler(LoginHandler):
    """JupyterHub's login page, which shows why a username was refused (400) instead of the
    generic "Invalid username or password"."""

    async def post(self):
        try:
            await super().post()
        except UsernameRefused as refused:
            username = self.get_argument("username", "", strip=True)
            self.set_status(400)
            html = await self._render(login_error=str(refused), username=username[:40])
            self.finish(html)


class ReservedUsernames(LoggingConfigurable):
    """Mixed in before an Authenticator: ``validate_username`` refuses what
    ``schema.site.check_username`` refuses, for every way a user comes to be (sign-in, the
    admin API, start-up), so ``build`` or ``root`` never becomes a hub user."""

    reserved_usernames = Set(
        set(RESERVED_USERNAMES),
        config=True,
        help="Usernames no one may sign in with (set from the site config).",
    )

    def validate_username(self, username: str) -> bool:
        try:
            check_username(username, frozenset(self.reserved_usernames))
        except ValueError:
            return False
        return super().validate_username(username)


class KioskAuthenticator(ReservedUsernames, SharedPasswordAuthenticator):
    """SharedPasswordAuthenticator that refuses reserved usernames and explains refusals.

    Usernames are normalised (trimmed, lowercased) and must pass
    ``schema.site.check_username``: the pattern ``USERNAME_PATTERN`` and none of the reserved
    names (the build account's, services', system accounts'). A refused one gets its reason on
    the login page. ``validate_username`` applies the same rule to every other way a user
    comes to be (the admin API, other sign-in paths), so ``build`` never becomes a hub user.
    """

    def get_handlers(self, app):
        return [("/login", KioskLoginHandler)]

    async def authenticate(self, handler, data):
        username = self.normalize_username(str((data or {}).get("username", "")).strip())
        try:
            check_username(username, frozenset(self.reserved_usernames))
        except ValueError as exc:
            message = str(exc)
            raise UsernameRefused(message[:1].upper() + message[1:]) from None
        return await super().authenticate(handler, {**data, "username": username})
