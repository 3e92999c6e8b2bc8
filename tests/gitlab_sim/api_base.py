"""The base of the simulated API's handlers: identity, permissions, bodies, pagination, errors.

- Authentication: ``PRIVATE-TOKEN`` (personal access tokens) or ``Authorization: Bearer``
  (OAuth tokens, held to their scopes: ``read_user`` reads ``/user`` only, ``read_api``
  reads everything, ``api`` does everything; else ``403 insufficient_scope``). A token
  GitLab does not know is ``401 {"message": "401 Unauthorized"}``, even on public
  resources; no token at all reads public projects only.
- Lists use offset pagination: ``page``, ``per_page`` (default 20, at most 100) and the
  headers ``X-Page``, ``X-Per-Page``, ``X-Total``, ``X-Total-Pages``, ``X-Next-Page``,
  ``X-Prev-Page`` and ``Link`` (``rel="next"``, ``"prev"``, ``"first"``, ``"last"``).
- A ``ModelError`` raised anywhere becomes its status and GitLab's JSON error body.
"""

from __future__ import annotations

import json
import math
from urllib.parse import urlencode

from tornado.web import RequestHandler

from .model import GitLabModel, ModelError, Project, User

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100


class ApiHandler(RequestHandler):
    """Base: the model, the caller's identity, JSON answers and GitLab's error bodies."""

    def initialize(self, simulation) -> None:
        self.simulation = simulation
        self.model: GitLabModel = simulation.model

    def prepare(self) -> None:
        self.simulation.requests.append(
            (self.request.method, self.request.path, self.request.query)
        )

    def check_xsrf_cookie(self) -> None:
        """The API authenticates with tokens, not cookies."""

    # --- identity ---------------------------------------------------------------------

    def caller(self) -> User | None:
        """The token's user; None without a token; 401 for a token GitLab does not know."""
        token = self.request.headers.get("PRIVATE-TOKEN")
        authorization = self.request.headers.get("Authorization", "")
        if token is None and authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
        if token is None:
            return None
        user = self.model.user_for_token(token)
        if user is None:
            raise ModelError(401, {"message": "401 Unauthorized"})
        scopes = self.model.token_scopes.get(token)
        if scopes is not None and not self._scope_allows(scopes):
            raise ModelError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than "
                    "provided by the access token.",
                    "scope": "api read_api",
                },
            )
        return user

    def _scope_allows(self, scopes: tuple[str, ...]) -> bool:
        """``read_user`` reads the user alone; ``read_api`` reads all; ``api`` does all."""
        if "api" in scopes:
            return True
        if self.request.method in ("GET", "HEAD") and "read_api" in scopes:
            return True
        return self.request.path == "/api/v4/user" and "read_user" in scopes

    def signed_in(self) -> User:
        user = self.caller()
        if user is None:
            raise ModelError(401, {"message": "401 Unauthorized"})
        return user

    def project(self, id_or_path: str, user: User | None) -> Project:
        return self.model.find_project(user, id_or_path)

    def ci_project(self, id_or_path: str, user: User | None) -> Project:
        """A project whose CI and registry the caller may read (403 when they may not)."""
        project = self.project(id_or_path, user)
        if not self.model.can_read_ci(user, project):
            raise ModelError(403, {"message": "403 Forbidden"})
        return project

    def require_level(self, user: User, project: Project, level: int) -> None:
        if self.model.access_level(user, project) < level:
            raise ModelError(403, {"message": "403 Forbidden"})

    # --- request bodies and answers ------------------------------------------------------

    def body_arguments(self) -> dict:
        """A JSON body, or a form body with ``variables[KEY]=value`` keys folded into a dict."""
        content_type = self.request.headers.get("Content-Type", "")
        if "json" in content_type:
            try:
                body = json.loads(self.request.body or b"{}")
            except ValueError:
                raise ModelError(
                    400, {"error": "The provided content-type is not supported."}
                ) from None
            if not isinstance(body, dict):
                raise ModelError(400, {"error": "body is invalid"})
            return body
        arguments: dict = {}
        variables: dict[str, str] = {}
        for key, values in self.request.body_arguments.items():
            value = values[-1].decode("utf-8", "replace")
            if key.startswith("variables[") and key.endswith("]"):
                variables[key[len("variables[") : -1]] = value
            else:
                arguments[key] = value
        if variables:
            arguments["variables"] = variables
        return arguments

    def answer(self, body, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def paginated(self, items: list) -> None:
        """Answer one page of ``items`` with GitLab's pagination headers."""
        page = self._positive_int("page", 1)
        per_page = min(self._positive_int("per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        self.set_header("X-Page", str(page))
        self.set_header("X-Per-Page", str(per_page))
        self.set_header("X-Total", str(total))
        self.set_header("X-Total-Pages", str(total_pages))
        self.set_header("X-Next-Page", str(page + 1) if page < total_pages else "")
        self.set_header("X-Prev-Page", str(page - 1) if page > 1 else "")
        links = []
        if page < total_pages:
            links.append(f'<{self._page_url(page + 1, per_page)}>; rel="next"')
        if page > 1:
            links.append(f'<{self._page_url(page - 1, per_page)}>; rel="prev"')
        links.append(f'<{self._page_url(1, per_page)}>; rel="first"')
        links.append(f'<{self._page_url(total_pages, per_page)}>; rel="last"')
        self.set_header("Link", ", ".join(links))
        self.answer(chunk)

    def _positive_int(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw in (None, ""):
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise ModelError(400, {"error": f"{name} is invalid"})
        return int(raw)

    def _page_url(self, page: int, per_page: int) -> str:
        arguments = {
            key: values[-1].decode() for key, values in self.request.query_arguments.items()
        }
        arguments.update(page=str(page), per_page=str(per_page))
        base = f"{self.request.protocol}://{self.request.host}{self.request.path}"
        return f"{base}?{urlencode(arguments)}"

    def flag(self, name: str) -> bool:
        return (self.get_query_argument(name, "") or "").lower() in ("true", "1", "yes")

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, ModelError):
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs) -> None:
        """GitLab's error body: the ModelError's own, else ``{"error": "<status> <reason>"}``."""
        self.set_header("Content-Type", "application/json")
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, ModelError):
            self.set_status(error.status)
            self.finish(json.dumps(error.body))
            return
        self.finish(json.dumps({"error": f"{status_code} {self._reason}"}))
