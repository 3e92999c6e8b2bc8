"""Forms reached through a reviewer link carry an XSRF token, as the signed-in pages' do.

The holder of a link has no hub session, so the token follows JupyterHub's own scheme
(``jupyterhub._xsrf_utils``, what HubOAuth uses for the service's signed-in forms) bound to
the link instead of a session: a signed ``_xsrf`` cookie limited to the link's path
(``<prefix>review/<secret>``), whose value each form posts back. The cookie is set here
rather than by JupyterHub's helper, which logs the cookie's path, and with it the secret.
A JSON request (``Content-Type: application/json``) needs no token: a page of another site
cannot send one without a CORS preflight, which the gallery never grants.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from jupyterhub._xsrf_utils import (
    _anonymous_xsrf_id,
    _create_signed_value_urlsafe,
    _get_signed_value_urlsafe,
    check_xsrf_cookie,
)
from tornado import web

from .store import secret_hash

COOKIE_SECONDS = 3600


def is_json(request) -> bool:
    return request.headers.get("Content-Type", "").split(";")[0].strip() == "application/json"


class LinkXsrf(web.RequestHandler):
    """A reviewer-link handler whose first path argument is the link's secret."""

    prefix: str

    def link_path(self) -> str:
        return f"{self.prefix}review/{self.path_args[0]}"

    @property
    def _xsrf_token_id(self) -> bytes:
        link = secret_hash(self.path_args[0])[:32]
        return f"review-{link}:{_anonymous_xsrf_id(self)}".encode("ascii", "replace")

    def _cookie_token(self) -> bytes | None:
        """The ``_xsrf`` cookie signed for this link and browser, among those sent."""
        for chunk in self.request.headers.get("Cookie", "").split(";"):
            if chunk.partition("=")[0].strip() != "_xsrf":
                continue
            try:
                token = SimpleCookie(chunk)["_xsrf"].value.encode("ascii")
            except (CookieError, KeyError, UnicodeEncodeError):
                continue
            if _get_signed_value_urlsafe(self, "_xsrf", token) == self._xsrf_token_id:
                return token
        return None

    @property
    def xsrf_token(self) -> bytes:
        if not hasattr(self, "_link_xsrf_token"):
            token = self._cookie_token()
            if token is None and self.request.method == "GET":
                token = _create_signed_value_urlsafe(self, "_xsrf", self._xsrf_token_id)
                self.set_cookie(
                    "_xsrf", token.decode(), path=self.link_path(), max_age=COOKIE_SECONDS,
                    httponly=True, samesite="Strict",
                )  # fmt: skip
            self._link_xsrf_token = token or b""
        return self._link_xsrf_token

    def check_xsrf_cookie(self) -> None:
        if is_json(self.request):
            return
        if not self.xsrf_token:
            raise web.HTTPError(403, "this form has expired; open the reviewer link again")
        check_xsrf_cookie(self)
