"""Forms reached through a reviewer link carry an XSRF token, as the signed-in pages' do.

The holder of a link has no hub session, so the token is JupyterHub's own double-submit
scheme (``jupyterhub._xsrf_utils``, what HubOAuth uses for the service's signed-in forms)
bound to the link instead of a session: a signed ``_xsrf`` cookie limited to the link's path
(``<prefix>review/<secret>``), whose value each form posts back. A JSON request (``Content-
Type: application/json``) needs no token: a page of another site cannot send one without a
CORS preflight, which the gallery never grants.
"""

from __future__ import annotations

from jupyterhub._xsrf_utils import _anonymous_xsrf_id, check_xsrf_cookie, get_xsrf_token
from tornado import web

from .store import secret_hash


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

    @property
    def xsrf_token(self) -> bytes:
        return get_xsrf_token(self, cookie_path=self.link_path())

    def check_xsrf_cookie(self) -> None:
        if is_json(self.request):
            return
        check_xsrf_cookie(self)
