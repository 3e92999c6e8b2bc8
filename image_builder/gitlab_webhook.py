"""GitLab webhooks: pipeline and job events that wake the builds following a pipeline.

GitLab posts a project's events to a URL with the headers ``X-Gitlab-Event`` (``Pipeline
Hook``, ``Job Hook``, ...) and ``X-Gitlab-Token`` (the secret set on the webhook, sent as is).
``GitLabWebhookHandler`` checks that token against ``gitlab.webhook_secret`` in constant time
(401 otherwise), parses the payload (``parse_event``, pure) and tells the ``PipelineEventBus``,
which wakes every follower of that pipeline at once.

An event is a wake-up call, not the truth: the follower then reads the pipeline from the API
(level-triggered), so a lost, late, repeated or out-of-order event changes nothing but the
latency, and polling with backoff covers a missing webhook. The bus lives in one process; with
several service replicas, the ones that did not get the event fall back to polling.

Mount the handler outside HubOAuth (GitLab cannot sign in), with ``webhook_route``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tornado.web import HTTPError

from .request_body import LimitedBody

PIPELINE_HOOK = "Pipeline Hook"
JOB_HOOK = "Job Hook"
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_STATUS_LENGTH = 64


class WebhookPayloadError(ValueError):
    """A payload that does not have the shape GitLab documents for its event."""


@dataclass(frozen=True)
class PipelineEvent:
    """A ``Pipeline Hook``: the pipeline's status changed."""

    project_id: int
    pipeline_id: int
    status: str
    ref: str | None = None
    sha: str | None = None
    project_path: str | None = None


@dataclass(frozen=True)
class JobEvent:
    """A ``Job Hook``: one job of a pipeline changed status."""

    project_id: int
    pipeline_id: int
    job_id: int
    job_name: str
    status: str


def token_matches(received: str | None, secret: str | None) -> bool:
    """Whether the ``X-Gitlab-Token`` header equals the configured secret (constant time).

    Without a configured secret nothing matches: the receiver never runs unauthenticated.
    """
    if not secret or received is None:
        return False
    return hmac.compare_digest(received.encode("utf-8"), secret.encode("utf-8"))


def parse_event(event_name: str, payload: Any) -> PipelineEvent | JobEvent | None:
    """The event in a webhook payload; None for events KioskHub does not follow."""
    if event_name == PIPELINE_HOOK:
        return _pipeline_event(payload)
    if event_name == JOB_HOOK:
        return _job_event(payload)
    return None


def _pipeline_event(payload: Any) -> PipelineEvent:
    body = _mapping(payload, "payload")
    if body.get("object_kind") != "pipeline":
        raise WebhookPayloadError("a Pipeline Hook must have object_kind 'pipeline'")
    attributes = _mapping(body.get("object_attributes"), "object_attributes")
    project = _mapping(body.get("project"), "project")
    return PipelineEvent(
        project_id=_identifier(project.get("id"), "project.id"),
        pipeline_id=_identifier(attributes.get("id"), "object_attributes.id"),
        status=_status(attributes.get("status"), "object_attributes.status"),
        ref=_optional_text(attributes.get("ref")),
        sha=_optional_text(attributes.get("sha")),
        project_path=_optional_text(project.get("path_with_namespace")),
    )


def _job_event(payload: Any) -> JobEvent:
    body = _mapping(payload, "payload")
    if body.get("object_kind") != "build":
        raise WebhookPayloadError("a Job Hook must have object_kind 'build'")
    return JobEvent(
        project_id=_identifier(body.get("project_id"), "project_id"),
        pipeline_id=_identifier(body.get("pipeline_id"), "pipeline_id"),
        job_id=_identifier(body.get("build_id"), "build_id"),
        job_name=_optional_text(body.get("build_name")) or "",
        status=_status(body.get("build_status"), "build_status"),
    )


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise WebhookPayloadError(f"{where}: expected an object")
    return value


def _identifier(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WebhookPayloadError(f"{where}: expected a positive integer")
    return value


def _status(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_STATUS_LENGTH:
        raise WebhookPayloadError(f"{where}: expected a status name")
    return value


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class PipelineEventBus:
    """Wakes the followers of a pipeline when an event about it arrives (one process)."""

    def __init__(self) -> None:
        self._followers: dict[tuple[int, int], set[asyncio.Event]] = defaultdict(set)
        self.received = 0

    @contextmanager
    def subscribe(self, project_id: int, pipeline_id: int) -> Iterator[asyncio.Event]:
        """An event that is set whenever GitLab reports on this pipeline; clear it after use."""
        key = (project_id, pipeline_id)
        wake = asyncio.Event()
        self._followers[key].add(wake)
        try:
            yield wake
        finally:
            self._followers[key].discard(wake)
            if not self._followers[key]:
                del self._followers[key]

    def publish(self, event: PipelineEvent | JobEvent) -> int:
        """Wake the followers of the event's pipeline; returns how many there were."""
        self.received += 1
        followers = self._followers.get((event.project_id, event.pipeline_id), ())
        for wake in followers:
            wake.set()
        return len(followers)


class GitLabWebhookHandler(LimitedBody):
    """``POST``: GitLab's Pipeline and Job events, authenticated by ``X-Gitlab-Token``.

    401 for a missing or wrong token (and for every request when no secret is configured),
    before any of the body is read; 413 for a body over ``gitlab.max_webhook_bytes``, also
    before it is read when its length is declared; 400 for a payload of the wrong shape, 200
    otherwise (events KioskHub does not follow are answered ``ignored``, so GitLab's "Test"
    button works).
    """

    def initialize(
        self, secret: str | None, events: PipelineEventBus, body_limit: int = MAX_PAYLOAD_BYTES
    ) -> None:
        self.secret = secret
        self.events = events
        self.body_limit = body_limit

    def check_xsrf_cookie(self) -> None:
        """GitLab sends no XSRF cookie; the secret token authenticates these requests."""

    def check_before_body(self) -> None:
        if not token_matches(self.request.headers.get("X-Gitlab-Token"), self.secret):
            raise HTTPError(401, "401 Unauthorized")

    def post(self) -> None:
        try:
            payload = json.loads(self.body_bytes or b"null")
            event = parse_event(self.request.headers.get("X-Gitlab-Event", ""), payload)
        except (ValueError, UnicodeDecodeError) as error:
            self._answer(400, {"message": f"not a GitLab webhook payload: {error}"})
            return
        if event is None:
            self._answer(200, {"status": "ignored"})
            return
        woken = self.events.publish(event)
        self._answer(200, {"status": "accepted", "followers": woken})

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        message = self._reason
        if isinstance(error, HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        self._answer(status_code, {"message": message})

    def _answer(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


def webhook_route(
    path: str, secret: str | None, events: PipelineEventBus, body_limit: int = MAX_PAYLOAD_BYTES
) -> tuple:
    """A tornado routing rule for the receiver, for the service's routing table."""
    return (
        path,
        GitLabWebhookHandler,
        {"secret": secret, "events": events, "body_limit": body_limit},
    )
