"""The one place where KioskHub talks to GitLab: python-gitlab behind an async face.

python-gitlab is synchronous (it uses requests). KioskHub's services are async, so every
python-gitlab call goes through ``GitLabConnection.call``, which runs it in a thread executor
and awaits the result. This is deliberate and confined to this I/O edge: the rest of the
GitLab path (variables, webhook parsing, the follow loop) stays async or pure and never
touches python-gitlab objects outside ``call``. python-gitlab is the ecosystem's client and
follows GitLab's pagination, errors and authentication for us; rewriting it on an async HTTP
client would be the larger risk.

Errors come back as ``GitLabError`` subclasses with a message a person can act on.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Literal, TypeVar

import gitlab
import gitlab.exceptions

T = TypeVar("T")

TokenKind = Literal["private", "oauth"]
"""private: a personal, project or group access token (PRIVATE-TOKEN header); oauth: an OAuth
access token such as the one GitLab sign-in keeps in JupyterHub's auth_state."""


class GitLabError(Exception):
    """GitLab refused or failed a request; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class GitLabAuthError(GitLabError):
    """The token is missing, wrong, expired or lacks the scope."""


class GitLabNotFound(GitLabError):
    """No such object, or one the token may not see (GitLab answers 404 for both)."""


class GitLabForbidden(GitLabError):
    """The token's account may see the object but lacks the role for this action."""


class GitLabConnection:
    """A python-gitlab client for one token, with async calls.

    ``token_kind`` picks how the token is sent: ``private`` (PRIVATE-TOKEN header) or
    ``oauth`` (Authorization: Bearer). ``executor`` is where the blocking calls run; None is
    the event loop's default thread pool.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        token_kind: TokenKind = "private",
        timeout: float = 30.0,
        executor: Executor | None = None,
    ):
        credentials: dict[str, str] = {}
        if token:
            credentials = (
                {"oauth_token": token} if token_kind == "oauth" else {"private_token": token}
            )
        self.url = url.rstrip("/")
        self.client = gitlab.Gitlab(self.url, timeout=timeout, **credentials)
        self._executor = executor

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``function(*args, **kwargs)`` (a python-gitlab call) off the event loop."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(function, *args, **kwargs)
            )
        except gitlab.exceptions.GitlabError as error:
            raise translate_error(error) from error

    def close(self) -> None:
        self.client.session.close()


def translate_error(error: gitlab.exceptions.GitlabError) -> GitLabError:
    """python-gitlab's exception as a ``GitLabError`` whose message says what GitLab said."""
    status = error.response_code
    said = _message_text(error.error_message)
    if isinstance(error, gitlab.exceptions.GitlabAuthenticationError) or status == 401:
        return GitLabAuthError(
            f"GitLab refused the token ({said}); it may be wrong, expired or lack the api scope",
            status,
        )
    if status == 404:
        return GitLabNotFound(f"GitLab: {said}", status)
    if status == 403:
        return GitLabForbidden(f"GitLab: {said}; the account lacks the role for this", status)
    return GitLabError(f"GitLab answered {status}: {said}" if status else f"GitLab: {said}", status)


def _message_text(message: Any) -> str:
    """GitLab's error bodies hold a string, a list, or a mapping of field to messages."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if isinstance(message, Mapping):
        parts = []
        for key, value in message.items():
            text = "; ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            parts.append(text if key == "base" else f"{key}: {text}")
        return "; ".join(parts)
    if isinstance(message, list | tuple):
        return "; ".join(map(str, message))
    return str(message)
