"""The builder service refuses big bodies before reading them, and the webhook's secret first.

Attack: send the API or the GitLab webhook a body of 100 MB. Before, tornado buffered all of
it (its default limit is 100 MB) and only then did the handler look at the token or the size.
Now the headers alone decide: the client below declares 100 MB and sends none of it, and still
gets its answer at once.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from kioskhub.hub.schema.config_file import load_site
from kioskhub.image_builder.gitlab_webhook import PipelineEventBus
from kioskhub.image_builder.request_body import DRAIN_BYTES
from kioskhub.image_builder.service import make_app, start_catalog

SECRET = "0123456789abcdef01234567"
PREFIX = "/services/environments/"
HUNDRED_MB = 100 * 1024 * 1024


@pytest.fixture
def service(tmp_path, monkeypatch):
    """The real builder service's app on a free port: (host, port)."""
    config = tmp_path / "kioskhub.yaml"
    config.write_text(
        "builder: {enabled: true, max_request_bytes: 4096}\n"
        "gitlab: {url: 'https://gitlab.example.org', max_webhook_bytes: 8192,"
        f" webhook_secret: '{SECRET}'}}\n"
    )
    monkeypatch.setenv("KIOSKHUB_GITLAB_TOKEN", "glpat-x")
    return load_site(config)


async def ask(port: int, head: str, body: bytes = b"") -> tuple[int, dict]:
    """Send ``head`` (and ``body``) on a raw connection; the answer's status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    header, _, payload = answer.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(payload) if payload else {}


def run_against(site, scenario):
    async def main():
        events = PipelineEventBus()
        catalog, runner = start_catalog(site, events=events, prefix=PREFIX)
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(make_app(site, catalog, runner, PREFIX, events))
        server.add_sockets(sockets)
        try:
            return await scenario(sockets[0].getsockname()[1])
        finally:
            server.stop()
            await runner.close()
            catalog.close()

    return asyncio.run(main())


def post(path: str, length: int, **headers: str) -> str:
    lines = [f"POST {PREFIX}{path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


def chunked(size: int) -> bytes:
    """``size`` bytes as a chunked body, in chunks of 5,000 bytes."""
    chunk = b"x" * 5000
    count = -(-size // len(chunk))
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(count)) + b"0\r\n\r\n"


def test_a_100_mb_api_body_is_refused_with_413_before_it_is_read(service):
    async def scenario(port):
        return await ask(port, post("api/environments", HUNDRED_MB, Authorization="token x"))

    assert run_against(service, scenario) == (
        413,
        {"status": 413, "message": "the request body is larger than 4096 bytes; send less"},
    )


def test_a_webhook_without_the_secret_is_refused_before_its_body(service):
    async def scenario(port):
        return await ask(port, post("webhooks/gitlab", HUNDRED_MB, X_Gitlab_Event="Job Hook"))

    assert run_against(service, scenario) == (401, {"message": "401 Unauthorized"})


def test_a_webhook_over_its_limit_is_refused_with_413(service):
    async def scenario(port):
        declared = await ask(port, post("webhooks/gitlab", HUNDRED_MB, X_Gitlab_Token=SECRET))
        chunked_head = post("webhooks/gitlab", 0, X_Gitlab_Token=SECRET).replace(
            "Content-Length: 0", "Transfer-Encoding: chunked"
        )
        streamed = await ask(port, chunked_head, chunked(20_000))
        endless = await ask(port, chunked_head, chunked(8192 + DRAIN_BYTES + 5000))
        return declared, streamed, endless

    declared, streamed, endless = run_against(service, scenario)

    too_large = {"message": "the request body is larger than 8192 bytes; send less"}
    assert declared == (413, too_large)
    assert streamed == (413, too_large), "a body without a length is read, dropped, refused"
    assert endless == (400, {}), "one far past the limit is cut by tornado"


def test_a_body_a_little_over_the_limit_is_read_before_the_413_is_sent(service):
    """A reply sent before the body was read can be lost to the connection's reset (a proxy
    in between then passes on a cut reply): the service waits for the body, then sends the
    whole 413."""
    body = b'{"object_kind": "push", "padding": "' + b"x" * 20_000 + b'"}'
    head = post("webhooks/gitlab", len(body), X_Gitlab_Token=SECRET, X_Gitlab_Event="Push")

    async def scenario(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.encode())
        await writer.drain()
        try:
            early = await asyncio.wait_for(reader.read(65536), timeout=0.5)
        except TimeoutError:
            early = b""
        writer.write(body)
        await writer.drain()
        answer = early or await asyncio.wait_for(reader.read(65536), timeout=10)
        writer.close()
        return early, answer

    early, answer = run_against(service, scenario)

    assert early == b"", "the service answered before it had read the body"
    header, _, payload = answer.partition(b"\r\n\r\n")
    assert int(header.split()[1]) == 413
    too_large = "the request body is larger than 8192 bytes; send less"
    assert json.loads(payload) == {"message": too_large}


def test_a_webhook_within_its_limit_is_accepted(service):
    payload = json.dumps({"object_kind": "push"}).encode()

    async def scenario(port):
        head = post("webhooks/gitlab", len(payload), X_Gitlab_Token=SECRET, X_Gitlab_Event="Push")
        return await ask(port, head, payload)

    assert run_against(service, scenario) == (200, {"status": "ignored"})
