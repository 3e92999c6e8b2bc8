"""A user's git credentials for one build: held in memory, handed to git by a credential helper.

A private repository on the site's GitLab is fetched with the token of the user who asked for
the build (GitLab's HTTP basic auth ``oauth2:<token>``). The token:

- lives in a ``GitCredentials`` for that build only, never in the catalog; its repr hides it;
- reaches git only as variables of the fetch processes' environment, which an inline
  credential helper (``credential.helper``, given through ``GIT_CONFIG_*`` variables) prints
  with the shell's ``printf`` builtin: never on a command line, never in a file;
- is never in the repository URL, so git writes it nowhere in ``.git``; the steps after the
  fetch (checkout, setup, postBuild) run without those variables;
- is scrubbed from git's output (``Scrubber``) before a line reaches the build log or an error.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import quote

from .build_log import BuildLog

GITLAB_TOKEN_USER = "oauth2"
"""The user name GitLab expects with an OAuth access token over HTTP."""
USER_VARIABLE = "KIOSKHUB_GIT_USERNAME"
SECRET_VARIABLE = "KIOSKHUB_GIT_PASSWORD"
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    f'printf "username=%s\\npassword=%s\\n" "${USER_VARIABLE}" "${SECRET_VARIABLE}"; }}; f'
)
"""Answers git's ``get`` from the process's own environment; ``store`` and ``erase`` do
nothing, so git keeps the token nowhere."""
HIDDEN = "[token hidden]"


@dataclass(frozen=True)
class GitCredentials:
    """A user name and token for one build's fetch; never stored, never shown."""

    username: str
    token: str = field(repr=False)

    def environment(self) -> dict[str, str]:
        """The variables that let git fetch with these credentials (fetch processes only)."""
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": CREDENTIAL_HELPER,
            USER_VARIABLE: self.username,
            SECRET_VARIABLE: self.token,
        }

    def scrubber(self) -> Scrubber:
        return Scrubber(self.username, self.token)


class Scrubber:
    """Replaces a token, and the forms it takes in URLs and HTTP headers, with a marker."""

    def __init__(self, username: str, token: str):
        pair = f"{username}:{token}".encode()
        forms = {token, quote(token, safe=""), base64.b64encode(pair).decode()}
        self.forms = sorted((form for form in forms if form), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, HIDDEN)
        return text


class ScrubbedLog:
    """A ``BuildLog`` seen through a ``Scrubber``: what git prints is cleaned before it is kept."""

    def __init__(self, log: BuildLog, scrub: Scrubber):
        self._log = log
        self._scrub = scrub

    def line(self, text: str) -> None:
        self._log.line(self._scrub(text))

    def progress(self, percent: int, phase: str) -> None:
        self._log.progress(percent, self._scrub(phase))
