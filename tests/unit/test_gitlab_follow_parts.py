"""The pure parts of following a pipeline: backoff, the trace cursor, error messages, the trace
cleaner and the settings section."""

from __future__ import annotations

import gitlab.exceptions
import pytest
from pydantic import ValidationError

from kioskhub.hub.schema.gitlab import GitLabSettings, api_token
from kioskhub.image_builder.gitlab_builder import plain_trace
from kioskhub.image_builder.gitlab_connection import (
    GitLabAuthError,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    translate_error,
)
from kioskhub.image_builder.gitlab_pipelines import Backoff, TraceCursor
from kioskhub.image_builder.gitlab_registry import BuiltImage, gitlab_token_from_auth_state


def test_backoff_doubles_to_its_maximum_and_resets():
    backoff = Backoff(initial=1, maximum=5)

    assert [backoff.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    assert backoff.reset() == 1
    assert backoff.next() == 2


def test_the_trace_cursor_returns_only_new_text():
    cursor = TraceCursor()

    assert cursor.advance(b"line 1\n") == "line 1\n"
    assert cursor.advance(b"line 1\n") == ""
    assert cursor.advance(b"line 1\nline 2\n", final=True) == "line 2\n"
    assert cursor.done


def test_the_trace_cursor_waits_for_the_rest_of_a_split_character():
    text = "Größe ✓\n".encode()
    cut = text.index("✓".encode()) + 1
    cursor = TraceCursor()

    first = cursor.advance(text[:cut])
    second = cursor.advance(text, final=True)

    assert first + second == "Größe ✓\n"
    assert "\ufffd" not in first + second


def test_the_trace_cursor_starts_over_when_the_trace_shrinks():
    cursor = TraceCursor()
    cursor.advance(b"old long trace\n")

    assert cursor.advance(b"new\n") == "new\n"


@pytest.mark.parametrize(
    "error, kind, words",
    [
        (
            gitlab.exceptions.GitlabAuthenticationError("401 Unauthorized", 401),
            GitLabAuthError,
            "refused the token",
        ),
        (
            gitlab.exceptions.GitlabGetError("404 Project Not Found", 404),
            GitLabNotFound,
            "404 Project Not Found",
        ),
        (
            gitlab.exceptions.GitlabCreateError("403 Forbidden", 403),
            GitLabForbidden,
            "lacks the role",
        ),
        (
            gitlab.exceptions.GitlabCreateError({"base": ["Reference not found"]}, 400),
            GitLabError,
            "GitLab answered 400: Reference not found",
        ),
        (
            gitlab.exceptions.GitlabCreateError({"key": ["is invalid"]}, 400),
            GitLabError,
            "key: is invalid",
        ),
    ],
)
def test_gitlab_errors_read_as_what_gitlab_said(error, kind, words):
    translated = translate_error(error)

    assert type(translated) is kind
    assert words in str(translated)
    assert translated.status == error.response_code


def test_the_trace_cleaner_drops_colours_sections_and_overwritten_text():
    raw = (
        "section_start:1700000000:build_script\r\x1b[0K\x1b[32;1m$ repo2docker\x1b[0;m\n"
        "progress 10%\rprogress 100%\n"
        "section_end:1700000001:build_script\r\x1b[0Kdone\n"
    )

    assert plain_trace(raw) == "$ repo2docker\nprogress 100%\ndone\n"


def test_a_built_image_is_pinned_by_its_digest():
    image = BuiltImage("registry.example/lab/a/kioskhub-env:abc", "sha256:0f", "abc", 1, "lab/a")

    assert image.pinned_ref == "registry.example/lab/a/kioskhub-env:abc@sha256:0f"


def test_the_user_token_comes_from_auth_state():
    assert gitlab_token_from_auth_state({"access_token": "gloas-1", "gitlab_user": {}}) == "gloas-1"
    assert gitlab_token_from_auth_state({"access_token": ""}) is None
    assert gitlab_token_from_auth_state(None) is None


def test_the_settings_check_urls_and_namespaces_and_read_the_token_from_the_environment():
    settings = GitLabSettings(url="https://gitlab.example.org/", allowed_namespaces=["lab/physics"])

    assert settings.url == "https://gitlab.example.org"
    assert api_token(settings, {"KIOSKHUB_GITLAB_TOKEN": "glpat-x"}) == "glpat-x"
    assert api_token(settings, {}) is None
    with pytest.raises(ValidationError, match="not a GitLab group path"):
        GitLabSettings(allowed_namespaces=["https://gitlab.example.org/lab"])
    with pytest.raises(ValidationError, match="expected a URL"):
        GitLabSettings(url="gitlab.example.org")
    with pytest.raises(ValidationError, match="at least 24 characters"):
        GitLabSettings(webhook_secret="short")
