"""KioskHub's GitLab routes (webhook receiver, CI template) served on the calling event loop,
exactly as ``kioskhub.image_builder.gitlab_service.gitlab_routes`` gives them to the service."""

from __future__ import annotations

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from kioskhub.hub.schema.gitlab import GitLabSettings
from kioskhub.image_builder.gitlab_service import TEMPLATE_PATH, WEBHOOK_PATH, gitlab_routes
from kioskhub.image_builder.gitlab_webhook import PipelineEventBus

PREFIX = "/services/environments/"


async def start_webhook_receiver(secret: str | None, events: PipelineEventBus):
    """(server, webhook URL) on 127.0.0.1 at a free port; the caller stops the server.

    The CI template is served beside it, at ``template_url(webhook URL)``.
    """
    settings = GitLabSettings(url="https://gitlab.example.org", webhook_secret=secret)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(Application(gitlab_routes(PREFIX, settings, events), xsrf_cookies=True))
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}{PREFIX}{WEBHOOK_PATH}"


def template_url(webhook_url: str) -> str:
    return webhook_url.replace(WEBHOOK_PATH, TEMPLATE_PATH)
