"""The simulated GitLab as a running HTTP server on 127.0.0.1 at a random port.

It runs in a thread of its own with its own event loop, so that the synchronous
python-gitlab client (called from tests, or from KioskHub's executor threads) and KioskHub's
async code (on the test's event loop) can both talk to it. Pipelines advance on a timer
(``step_interval``) for projects with ``autorun``, or on demand with ``advance``. Webhook
deliveries are POSTed to each hook's URL with the ``X-Gitlab-Event`` and ``X-Gitlab-Token``
headers; ``deliveries`` records what each answered.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from tests.support.threaded_api import ThreadedAPI

from .api import ROUTES, NotFoundHandler
from .git_http import GIT_ROUTES, GitRepositories
from .model import Delivery, GitLabModel, Pipeline
from .oauth import OAUTH_ROUTES, OAuthTokens


@dataclass(frozen=True)
class DeliveryRecord:
    """One webhook request the simulation sent, and the status it got (0: no answer)."""

    url: str
    event: str
    object_id: int
    status_value: str
    response_code: int


class GitLabSimulation(ThreadedAPI):
    """Start with ``with GitLabSimulation() as gitlab:``; ``gitlab.url`` is its base URL."""

    name = "GitLab simulation"
    routes = ROUTES + OAUTH_ROUTES + GIT_ROUTES
    not_found = NotFoundHandler

    def __init__(self, *, step_interval: float = 0.05, token_lifetime: int = 7200):
        super().__init__()
        self.step_interval = step_interval
        self.model = GitLabModel()
        self.oauth = OAuthTokens(self.model, expires_in=token_lifetime)
        self.git = GitRepositories()
        self.requests: list[tuple[str, str, str]] = []
        self.deliveries: list[DeliveryRecord] = []
        self._outbox: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []

    def on_start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.model.web_url = self.url
        self._outbox = asyncio.Queue()
        self._tasks = [loop.create_task(self._tick()), loop.create_task(self._sender())]

    def on_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        for task in self._tasks:
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    # --- pipelines ----------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.step_interval)
            for pipeline in self.model.unfinished():
                if pipeline.project.autorun:
                    self.deliver_soon(self.model.step(pipeline))

    def advance(self, pipeline_id: int, steps: int = 1) -> str:
        """Advance a pipeline by ``steps`` (its webhooks are sent); its status after that."""
        pipeline = self.model.pipelines[pipeline_id]

        async def advance() -> None:
            for _ in range(steps):
                self.deliver_soon(self.model.step(pipeline))

        asyncio.run_coroutine_threadsafe(advance(), self._loop).result(10)
        return pipeline.status

    def finish(self, pipeline_id: int) -> str:
        """Run a pipeline to its end on demand; its final status."""
        pipeline = self.model.pipelines[pipeline_id]
        return self.advance(pipeline_id, len(pipeline.steps))

    def pipelines_of(self, project) -> list[Pipeline]:
        with self.model.lock:
            return [p for p in self.model.pipelines.values() if p.project is project]

    # --- webhooks -----------------------------------------------------------------------

    def deliver_soon(self, deliveries: list[Delivery]) -> None:
        """Queue webhooks (on the server's loop); one sender sends them in order, as GitLab's
        queue does, without holding up the API answer that caused them."""
        for delivery in deliveries:
            self._outbox.put_nowait(delivery)

    async def _sender(self) -> None:
        client = AsyncHTTPClient()
        while True:
            delivery = await self._outbox.get()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitLab/17.5.0",
                "X-Gitlab-Event": delivery.event,
                "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                "X-Gitlab-Webhook-UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, delivery.hook.url)),
                "X-Gitlab-Instance": self.url,
            }
            if delivery.hook.token is not None:
                headers["X-Gitlab-Token"] = delivery.hook.token
            request = HTTPRequest(
                delivery.hook.url,
                method="POST",
                headers=headers,
                body=json.dumps(delivery.payload),
                request_timeout=5,
            )
            try:
                response = await client.fetch(request, raise_error=False)
                code = response.code
            except (OSError, HTTPClientError):
                code = 0
            payload = delivery.payload
            if delivery.event == "Pipeline Hook":
                object_id, status = (
                    payload["object_attributes"]["id"],
                    payload["object_attributes"]["status"],
                )
            else:
                object_id, status = payload["build_id"], payload["build_status"]
            self.deliveries.append(
                DeliveryRecord(delivery.hook.url, delivery.event, object_id, status, code)
            )

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[DeliveryRecord]:
        """Wait until at least ``count`` webhooks were sent; all sent so far.

        From async code whose loop serves the receiver, use ``await_deliveries`` instead.
        """
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.deliveries)

    async def await_deliveries(self, count: int, timeout: float = 5.0) -> list[DeliveryRecord]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return list(self.deliveries)
