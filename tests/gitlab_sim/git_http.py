"""Git over smart HTTP for the simulated GitLab: ``<gitlab>/<namespace>/<project>.git``.

Real git serves it: each request runs ``git http-backend`` as a CGI on the bare repository
that a test published for the project (``GitRepositories.publish``). Only fetching is served
(``info/refs`` and ``git-upload-pack``). Access follows GitLab's shape:

- public projects: anyone, without credentials;
- internal and private ones: HTTP basic auth whose password is a token of a user who may read
  the code (any user name; GitLab's is ``oauth2`` with an OAuth token): internal for every
  signed-in user, private for members with the Reporter role or more (Guests do not read code);
  an OAuth token needs a scope that downloads code (``api``, ``read_api``, ``read_repository``);
- no or unknown credentials: 401 with ``WWW-Authenticate: Basic realm="GitLab"``, as git needs
  to ask its credential helper; a user who may not read the project: 404.

``delay`` holds each answer back a little, so that a test can watch the fetch while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from pathlib import Path

from tornado.web import RequestHandler

from .model import REPORTER, GitLabModel, ModelError, User

SERVICE = "git-upload-pack"
CODE_SCOPES = frozenset({"api", "read_api", "read_repository"})
"""The OAuth scopes that GitLab lets download code over HTTP."""


class GitRepositories:
    """The bare repositories the simulation serves, by project path."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}
        self.delay = 0.0
        self.fetches: list[tuple[str, str | None, int]] = []
        """(project path, user name or None, answer status) of each request."""

    def publish(self, project_path: str, bare: Path) -> str:
        """Serve the bare repository ``bare`` as the project's; its URL path."""
        self.paths[project_path.lower()] = bare
        return f"/{project_path}.git"

    def publish_files(self, project_path: str, files: dict[str, str], folder: Path) -> str:
        """Commit ``files`` (name: text; executable when the text starts with ``#!``) to a
        new bare repository below ``folder`` and serve it as the project's; its URL path."""
        work = folder / f"{project_path}.work"
        work.mkdir(parents=True)
        for name, text in files.items():
            (work / name).write_text(text)
            if text.startswith("#!"):
                (work / name).chmod(0o755)
        git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.org"]
        for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "files"]):
            subprocess.run([*git, "-C", str(work), *args], check=True)
        bare = folder / f"{project_path}.git"
        subprocess.run([*git, "clone", "-q", "--bare", str(work), str(bare)], check=True)
        return self.publish(project_path, bare)


def may_read_code(model: GitLabModel, user: User | None, project) -> bool:
    if not model.can_read(user, project):
        return False
    if project.visibility != "private" or (user is not None and user.is_admin):
        return True
    return model.access_level(user, project) >= REPORTER


class GitHttpHandler(RequestHandler):
    """``GET <project>.git/info/refs?service=git-upload-pack``, ``POST .../git-upload-pack``."""

    def initialize(self, simulation) -> None:
        self.simulation = simulation
        self.model: GitLabModel = simulation.model
        self.repositories: GitRepositories = simulation.git

    def check_xsrf_cookie(self) -> None:
        """git authenticates with basic auth, not cookies."""

    async def get(self, project_path: str, rest: str) -> None:
        if self.get_query_argument("service", "") != SERVICE:
            self._refuse(403, "only fetching is served here")
            return
        await self._serve(project_path, rest)

    async def post(self, project_path: str, rest: str) -> None:
        await self._serve(project_path, rest)

    async def _serve(self, project_path: str, rest: str) -> None:
        user, known = self._user()
        bare = self.repositories.paths.get(project_path.lower())
        try:
            project = self.model.find_project(user, project_path) if bare else None
        except ModelError:
            project = None
        readable = project is not None and may_read_code(self.model, user, project)
        if not known or (not readable and user is None):
            self._record(project_path, user, 401)
            self.set_header("WWW-Authenticate", 'Basic realm="GitLab"')
            self._refuse(401, "HTTP Basic: Access denied")
            return
        if not readable:
            self._record(project_path, user, 404)
            self._refuse(404, "The project you were looking for could not be found")
            return
        await asyncio.sleep(self.repositories.delay)
        status, headers, body = await asyncio.get_running_loop().run_in_executor(
            None, self._backend, bare, rest, user
        )
        self._record(project_path, user, status)
        self.set_status(status)
        for name, value in headers:
            self.set_header(name, value)
        self.finish(body)

    def _user(self) -> tuple[User | None, bool]:
        """The basic-auth user (None: anonymous) and whether the credentials were known."""
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None, True
        try:
            _, _, token = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None, False
        user = self.model.user_for_token(token)
        scopes = self.model.token_scopes.get(token)
        if scopes is not None and not CODE_SCOPES & set(scopes):
            return None, False
        return user, user is not None

    def _backend(self, bare: Path, rest: str, user: User | None):
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(bare.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{bare.name}{rest}",
            "REQUEST_METHOD": self.request.method,
            "QUERY_STRING": self.request.query,
            "CONTENT_TYPE": self.request.headers.get("Content-Type", ""),
            "REMOTE_ADDR": self.request.remote_ip or "127.0.0.1",
            "REMOTE_USER": user.username if user else "",
        }
        for header, variable in (
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
            ("Git-Protocol", "GIT_PROTOCOL"),
        ):
            if header in self.request.headers:
                env[variable] = self.request.headers[header]
        done = subprocess.run(
            ["git", "http-backend"], input=self.request.body, env=env, capture_output=True
        )
        head, _, body = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        return status, headers, body

    def _record(self, project_path: str, user: User | None, status: int) -> None:
        self.repositories.fetches.append((project_path, user.username if user else None, status))

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "text/plain")
        self.finish(message + "\n")


GIT_ROUTES = [(r"/(.+?)\.git(/info/refs|/git-upload-pack)", GitHttpHandler)]
