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
import threading
import time
import uuid
from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from .api import ROUTES, NotFoundHandler
from .model import Delivery, GitLabModel, Pipeline


@dataclass(frozen=True)
class DeliveryRecord:
    """One webhook request the simulation sent, and the status it got (0: no answer)."""

    url: str
    event: str
    object_id: int
    status_value: str
    response_code: int


class GitLabSimulation:
    """Start with ``with GitLabSimulation() as gitlab:``; ``gitlab.url`` is its base URL."""

    def __init__(self, *, step_interval: float = 0.05):
        self.step_interval = step_interval
        self.model = GitLabModel()
        self.requests: list[tuple[str, str, str]] = []
        self.deliveries: list[DeliveryRecord] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: HTTPServer | None = None
        self._outbox: asyncio.Queue | None = None

    def __enter__(self) -> GitLabSimulation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> GitLabSimulation:
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.model.web_url = self.url
        self._thread = threading.Thread(
            target=self._run, args=(sockets,), daemon=True, name="gitlab-sim"
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the GitLab simulation did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self, sockets) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        application = Application(
            [(pattern, handler, {"simulation": self}) for pattern, handler in ROUTES],
            default_handler_class=NotFoundHandler,
            default_handler_args={"simulation": self},
        )
        self._server = HTTPServer(application)
        self._server.add_sockets(sockets)
        self._outbox = asyncio.Queue()
        tasks = [loop.create_task(self._tick()), loop.create_task(self._sender())]
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            for task in tasks:
                task.cancel()
            self._server.stop()
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
