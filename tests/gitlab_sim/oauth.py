"""GitLab as an OAuth 2 provider, in the shape of https://docs.gitlab.com/ee/api/oauth2.html.

- ``GET /oauth/authorize`` (``client_id``, ``redirect_uri``, ``response_type=code``,
  ``state``, ``scope``): an unknown client or a redirect URI that is not the application's
  own is an error page (never a redirect); otherwise a page that signs a user in and
  authorizes the application. The simulation keeps no passwords, so the page asks for the
  username only. ``POST`` redirects to ``redirect_uri?code=...&state=...``, or with
  ``error=access_denied`` when the user denies, ``error=invalid_scope`` for a scope the
  application was not given.
- ``POST /oauth/token``: ``grant_type`` ``authorization_code`` (``code``, ``redirect_uri``)
  or ``refresh_token`` (``refresh_token``); the client authenticates with ``client_id`` and
  ``client_secret`` in the body or HTTP Basic. Codes are single-use and live 10 minutes;
  access tokens live ``OAuthTokens.expires_in`` seconds; a refresh rotates the refresh
  token and revokes the previous access token, as GitLab does. Errors are RFC 6749's bodies.
- ``GET /api/v4/groups`` (``min_access_level``): the caller's groups. Access tokens work as
  ``Authorization: Bearer`` on the whole API (``api_base``).
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from tornado.web import RequestHandler

from .api_base import ApiHandler
from .model import GitLabModel, ModelError, OAuthApplication, User

CODE_LIFETIME = 600

INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "Client authentication failed due to unknown client, no client "
    "authentication included, or unsupported authentication method.",
}
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "The provided authorization grant is invalid, expired, revoked, does "
    "not match the redirection URI used in the authorization request, or was issued to "
    "another client.",
}


@dataclass
class Grant:
    """What a code or a refresh token stands for."""

    application: OAuthApplication
    user: User
    scopes: tuple[str, ...]
    redirect_uri: str = ""
    expires_at: float = 0.0
    access_token: str = ""


class OAuthTokens:
    """The provider's codes and refresh tokens; access tokens go to the model's token store."""

    def __init__(self, model: GitLabModel, expires_in: int = 7200) -> None:
        self.model = model
        self.expires_in = expires_in
        self.codes: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.issued: list[str] = []
        """Every access token issued, in order (tests read which one a client holds)."""

    def new_code(self, grant: Grant) -> str:
        code = secrets.token_hex(32)
        grant.expires_at = time.time() + CODE_LIFETIME
        with self.model.lock:
            self.codes[code] = grant
        return code

    def exchange_code(self, application: OAuthApplication, code: str, redirect_uri: str) -> dict:
        with self.model.lock:
            grant = self.codes.pop(code, None)
        valid = (
            grant is not None
            and grant.application is application
            and grant.redirect_uri == redirect_uri
            and time.time() < grant.expires_at
        )
        if not valid:
            raise OAuthError(400, INVALID_GRANT)
        return self._issue(grant)

    def refresh(self, application: OAuthApplication, refresh_token: str) -> dict:
        with self.model.lock:
            grant = self.refresh_tokens.get(refresh_token)
            if grant is None or grant.application is not application:
                raise OAuthError(400, INVALID_GRANT)
            del self.refresh_tokens[refresh_token]
            self.revoke(grant.access_token)
        return self._issue(grant)

    def revoke(self, access_token: str) -> None:
        with self.model.lock:
            self.model.tokens.pop(access_token, None)
            self.model.token_expiry.pop(access_token, None)
            self.model.token_scopes.pop(access_token, None)

    def expire_now(self, access_token: str) -> None:
        """Let an access token run out (as time would)."""
        with self.model.lock:
            self.model.token_expiry[access_token] = time.time()

    def _issue(self, grant: Grant) -> dict:
        access_token, refresh_token = secrets.token_hex(32), secrets.token_hex(32)
        with self.model.lock:
            self.model.tokens[access_token] = grant.user.id
            self.model.token_expiry[access_token] = time.time() + self.expires_in
            self.model.token_scopes[access_token] = grant.scopes
            grant.access_token = access_token
            self.refresh_tokens[refresh_token] = grant
            self.issued.append(access_token)
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh_token,
            "scope": " ".join(grant.scopes),
            "created_at": int(time.time()),
        }


class OAuthError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body["error"])
        self.status = status
        self.body = body


class OAuthPageHandler(RequestHandler):
    """Base of the provider's own endpoints (no cookies, so no XSRF check)."""

    def initialize(self, simulation) -> None:
        self.simulation = simulation
        self.model: GitLabModel = simulation.model
        self.tokens: OAuthTokens = simulation.oauth

    def prepare(self) -> None:
        self.simulation.requests.append(
            (self.request.method, self.request.path, self.request.query)
        )

    def check_xsrf_cookie(self) -> None:
        """The sign-in page keeps no session; the code flow's ``state`` protects the client."""


class AuthorizeHandler(OAuthPageHandler):
    """``/oauth/authorize``: GitLab's sign-in and "Authorize <application>?" page."""

    def get(self) -> None:
        application = self._application()
        if application is not None:
            self._page(application)

    def post(self) -> None:
        application = self._application()
        if application is None:
            return
        if self.get_argument("decision", "") != "authorize":
            self._back(error="access_denied", error_description="The user denied the request.")
            return
        scopes = tuple(self.get_argument("scope", "").split()) or application.scopes
        if not set(scopes) <= set(application.scopes):
            self._back(error="invalid_scope", error_description="The requested scope is invalid.")
            return
        username = self.get_argument("username", "").strip()
        user = next((u for u in self.model.users.values() if u.username == username), None)
        if user is None:
            self._page(application, error=f"No GitLab user {username!r}.")
            return
        code = self.tokens.new_code(Grant(application, user, scopes, self._redirect_uri()))
        self._back(code=code)

    def _redirect_uri(self) -> str:
        return self.get_argument("redirect_uri", "")

    def _application(self) -> OAuthApplication | None:
        """The requesting application, or None after an error page (GitLab never redirects
        to a URI that is not the application's)."""
        application = self.model.applications.get(self.get_argument("client_id", ""))
        if application is None:
            self._error_page("Client authentication failed due to unknown client.")
            return None
        if self._redirect_uri() != application.redirect_uri:
            self._error_page("The redirect URI included is not valid.")
            return None
        if self.get_argument("response_type", "code") != "code":
            self._error_page("The authorization server does not support this response type.")
            return None
        return application

    def _back(self, **arguments: str) -> None:
        state = self.get_argument("state", None)
        if state is not None:
            arguments["state"] = state
        separator = "&" if "?" in self._redirect_uri() else "?"
        self.redirect(self._redirect_uri() + separator + urlencode(arguments))

    def _error_page(self, message: str) -> None:
        self.set_status(400)
        self.finish(
            "<!doctype html><title>An error has occurred</title>"
            f'<h1>An error has occurred</h1><p class="error">{escape(message)}</p>'
        )

    def _page(self, application: OAuthApplication, error: str = "") -> None:
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{escape(self.get_argument(name, ""))}">'
            for name in ("client_id", "redirect_uri", "response_type", "state", "scope")
        )
        scopes = self.get_argument("scope", "") or " ".join(application.scopes)
        self.set_status(401 if error else 200)
        self.finish(
            "<!doctype html><title>Sign in · GitLab</title>"
            f"<h1>Authorize {escape(application.name)} to use your account?</h1>"
            f'<p>Scopes: <code id="scopes">{escape(scopes)}</code></p>'
            + (f'<p class="flash-alert">{escape(error)}</p>' if error else "")
            + '<form method="post" action="/oauth/authorize">'
            f"{hidden}"
            '<label>Username <input id="user_login" name="username" autofocus></label>'
            '<button id="authorize" type="submit" name="decision" value="authorize">'
            "Authorize</button>"
            '<button id="deny" type="submit" name="decision" value="deny">Deny</button>'
            "</form>"
        )


class TokenHandler(OAuthPageHandler):
    """``POST /oauth/token``: the authorization_code and refresh_token grants."""

    def post(self) -> None:
        try:
            application = self._client()
            grant_type = self.get_argument("grant_type", "")
            if grant_type == "authorization_code":
                body = self.tokens.exchange_code(
                    application,
                    self.get_argument("code", ""),
                    self.get_argument("redirect_uri", ""),
                )
            elif grant_type == "refresh_token":
                body = self.tokens.refresh(application, self.get_argument("refresh_token", ""))
            else:
                raise OAuthError(
                    400,
                    {
                        "error": "unsupported_grant_type",
                        "error_description": "The authorization grant type is not supported "
                        "by the authorization server.",
                    },
                )
        except OAuthError as error:
            self.set_status(error.status)
            body = error.body
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def _client(self) -> OAuthApplication:
        client_id = self.get_argument("client_id", "")
        secret = self.get_argument("client_secret", "")
        authorization = self.request.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            try:
                decoded = base64.b64decode(authorization.removeprefix("Basic ")).decode()
            except ValueError:
                decoded = ""
            client_id, _, secret = decoded.partition(":")
        application = self.model.applications.get(client_id)
        if application is None or not secrets.compare_digest(application.secret, secret):
            raise OAuthError(401, INVALID_CLIENT)
        return application


class GroupsHandler(ApiHandler):
    """``GET /api/v4/groups``: the caller's groups (``min_access_level``, default any role)."""

    def get(self) -> None:
        user = self.signed_in()
        level = self.get_query_argument("min_access_level", "") or "1"
        if not level.isdigit():
            raise ModelError(400, {"error": "min_access_level does not have a valid value"})
        with self.model.lock:
            groups = [
                g
                for g in self.model.groups.values()
                if user.is_admin or g.members.get(user.id, 0) >= int(level)
            ]
            self.paginated(
                [
                    {
                        "id": g.id,
                        "name": g.path.title(),
                        "path": g.path,
                        "full_name": g.full_path.replace("/", " / "),
                        "full_path": g.full_path,
                        "web_url": f"{self.model.web_url}/groups/{g.full_path}",
                        "visibility": g.visibility,
                        "parent_id": None,
                    }
                    for g in sorted(groups, key=lambda g: g.full_path)
                ]
            )


OAUTH_ROUTES = [
    (r"/oauth/authorize", AuthorizeHandler),
    (r"/oauth/token", TokenHandler),
    (r"/api/v4/groups", GroupsHandler),
]
