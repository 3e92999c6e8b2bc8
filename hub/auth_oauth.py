"""What every provider sign-in (OIDC, GitLab) shares, as a mixin for oauthenticator classes.

Mix it in before the oauthenticator class::

    class KioskOIDCAuthenticator(KioskOAuthMixin, GenericOAuthenticator): ...

It makes the provider's username a valid, unreserved hub username (or refuses it with a
page that says why), reads the client secret from the environment variable the site names,
and turns every failure of the provider's endpoints during sign-in into a readable page:
no traceback, and no hub user is created, because all of it happens before JupyterHub makes
the user. Groups (``manage_groups``), ``allowed_groups`` and ``admin_groups`` are
oauthenticator's own.
"""

from __future__ import annotations

import json
import os

from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Unicode, default

from kioskhub.hub.schema.site import check_username

from .auth import ReservedUsernames

SIGN_IN_REFUSED = "Sign-in refused"
"""The reason phrase of every refused sign-in; hub/templates/error.html explains it."""
NOT_ALLOWED = (
    "You signed in with the provider, but your account is not in a group that may use "
    "this site. Ask the site's admins to add you to one of its groups, then sign in again."
)


JSON_KINDS = {
    list: "a list",
    dict: "an object",
    int: "a number",
    float: "a number",
    bool: "true/false",
}


class SignInRefused(web.HTTPError):
    """A sign-in refused for a reason the user can read (shown on the error page)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, "%s", message, reason=SIGN_IN_REFUSED)
        self.message = message


class KioskOAuthMixin(ReservedUsernames):
    """Username checks, secrets from the environment and readable failures for oauthenticator.

    A configurable (so its traits load from the config), placed before the oauthenticator
    class in the bases.
    """

    client_secret_env = Unicode(
        "",
        config=True,
        help="Environment variable that holds the client secret (never in a config file).",
    )

    @default("client_secret")
    def _client_secret_from_env(self) -> str:
        return os.environ.get(self.client_secret_env, "") if self.client_secret_env else ""

    @default("custom_403_message")
    def _not_allowed_message(self) -> str:
        return NOT_ALLOWED

    def claim_label(self) -> str:
        """How the username's claim is named in messages (a subclass may say more)."""
        return f"the claim {self.username_claim!r}"

    def user_info_to_username(self, user_info: dict) -> str:
        """The username claim, normalised, checked like every hub username; else refused."""
        value = user_info.get(self.username_claim) if isinstance(user_info, dict) else None
        if value is None or value == "":
            raise SignInRefused(
                403,
                f"The sign-in provider did not send {self.claim_label()}, which this site "
                "uses as your username. Ask the site's admins to release it for this site "
                "(a scope or a mapper at the provider).",
            )
        if not isinstance(value, str):
            raise SignInRefused(
                403,
                f"The sign-in provider sent {self.claim_label()} as "
                f"{JSON_KINDS.get(type(value), 'data')}, not text, so it cannot be your "
                "username. Ask the site's admins to map a text claim to it.",
            )
        username = self.normalize_username(value.strip())
        try:
            check_username(username, frozenset(self.reserved_usernames))
        except ValueError as refused:
            message = str(refused)
            raise SignInRefused(
                403,
                f"Your account's username cannot be used here: {message}. Ask the site's "
                "admins for an account with another username.",
            ) from None
        return username

    async def authenticate(self, handler, data=None, **kwargs):
        """oauthenticator's sign-in, with the provider's failures told in words."""
        try:
            return await super().authenticate(handler, data, **kwargs)
        except HTTPClientError as error:
            raise SignInRefused(502, self._provider_failure(error)) from None
        except OSError as error:
            raise SignInRefused(
                502,
                f"The sign-in provider could not be reached ({error.strerror or error}). "
                "Try again later; if it persists, tell the site's admins.",
            ) from None

    def _provider_failure(self, error: HTTPClientError) -> str:
        """What the user reads when the provider's token or userinfo endpoint said no."""
        code, description = "", ""
        if error.response is not None and error.response.body:
            try:
                body = json.loads(error.response.body)
                code = str(body.get("error", ""))[:100]
                description = str(body.get("error_description", ""))[:200]
            except (ValueError, AttributeError):
                pass
        self.log.warning("Sign-in provider answered %s: %s %s", error.code, code, description)
        if code == "invalid_client":
            return (
                "The sign-in provider refused this site's client credentials "
                f"({description or code}), so you could not be signed in. The site's client "
                "id or secret is wrong: tell the site's admins."
            )
        shown = f" ({description or code})" if code or description else ""
        return (
            f"The sign-in provider answered {error.code}{shown}, so you could not be "
            "signed in. Try again; if it persists, tell the site's admins."
        )
