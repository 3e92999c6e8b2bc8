"""A user's git credentials: hidden from reprs and output, answered to git from the environment
only, and the rule on who may build a project on the site's GitLab with their own token."""

from __future__ import annotations

import base64
import subprocess

from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.builder_base import BuildRequest
from kioskhub.image_builder.git_credentials import (
    GITLAB_TOKEN_USER,
    HIDDEN,
    GitCredentials,
    ScrubbedLog,
)
from kioskhub.image_builder.gitlab_access import user_access_refusal
from kioskhub.image_builder.source_safety import RepositorySource

TOKEN = "glpat-s3cr3t/with+odd=chars"
CREDENTIALS = GitCredentials(GITLAB_TOKEN_USER, TOKEN)


def test_the_token_is_in_no_repr():
    source = RepositorySource(
        url="https://gitlab.example.org/lab/x.git", fetch_url="x", protocol="https"
    )
    request = BuildRequest(
        build_id=1, owner="ada", name="x", source=source, credentials=CREDENTIALS
    )
    assert TOKEN not in repr(CREDENTIALS)
    assert TOKEN not in repr(request)


def test_the_scrubber_hides_the_token_in_the_forms_git_and_http_print_it():
    scrub = CREDENTIALS.scrubber()
    header = base64.b64encode(f"oauth2:{TOKEN}".encode()).decode()
    text = f"token {TOKEN} url https://oauth2:glpat-s3cr3t%2Fwith%2Bodd%3Dchars@h Basic {header}"
    assert scrub(text) == f"token {HIDDEN} url https://oauth2:{HIDDEN}@h Basic {HIDDEN}"


def test_a_scrubbed_log_keeps_only_scrubbed_lines():
    log = BuildLog()
    ScrubbedLog(log, CREDENTIALS.scrubber()).line(f"fatal: bad token {TOKEN}")
    assert log.text() == f"fatal: bad token {HIDDEN}\n"


def test_git_gets_the_credentials_from_the_environment_and_stores_them_nowhere(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        **CREDENTIALS.environment(),
    }
    asked = "protocol=https\nhost=gitlab.example.org\npath=lab/x.git\n\n"
    filled = subprocess.run(
        ["git", "credential", "fill"], input=asked, env=env, capture_output=True, text=True
    )
    assert filled.returncode == 0, filled.stderr
    assert f"username=oauth2\npassword={TOKEN}\n" in filled.stdout
    approved = subprocess.run(
        ["git", "credential", "approve"],
        input=filled.stdout,
        env=env,
        capture_output=True,
        text=True,
    )
    assert approved.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_who_may_build_a_project_with_their_own_token():
    assert user_access_refusal("lab/x", "public", 0) is None
    assert user_access_refusal("lab/x", "internal", 0) is None
    assert user_access_refusal("lab/x", "private", 20) is None
    guest = user_access_refusal("lab/x", "private", 10)
    hidden = user_access_refusal("lab/x", None, 0)
    assert guest == hidden
    assert guest.startswith("your GitLab account cannot read the code of the GitLab project lab/x")
    assert "Reporter role" in guest
