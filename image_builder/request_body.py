"""Request bodies with a limit, never held in memory past it: a mixin for tornado handlers.

Tornado reads a whole body (up to 100 MB by default) before a handler runs. A handler that
mixes in ``LimitedBody`` streams its body instead (``stream_request_body``). ``prepare``
sees only the headers and refuses at once, with 413, a declared length more than
``DRAIN_BYTES`` over the limit. A body over the limit by less is read to its end and
dropped, and reading ``body_bytes`` then raises the 413: a reply sent before the body is
read can be lost, since closing a connection with unread data resets it, and a proxy in
between then passes on a cut reply. The connection's own limit is ``body_limit`` plus
``DRAIN_BYTES``, so a chunked body is cut (400) past that.
A subclass sets ``body_limit`` (bytes) in ``initialize`` and may check headers first by
overriding ``check_before_body`` (the webhook's secret token).
"""

from __future__ import annotations

from tornado import web

DRAIN_BYTES = 1024 * 1024
"""How far past the limit a body is still read (and dropped) before the 413 is sent."""


class BodyTooLarge(web.HTTPError):
    def __init__(self, limit: int):
        super().__init__(413, "the request body is larger than %d bytes; send less", limit)


@web.stream_request_body
class LimitedBody(web.RequestHandler):
    body_limit: int = 65536

    def check_before_body(self) -> None:
        """Checks on the headers alone, before any of the body is read (raise HTTPError)."""

    async def prepare(self):
        self._chunks: list[bytes] = []
        self._received = 0
        self.check_before_body()
        declared = self.request.headers.get("Content-Length")
        if declared is not None and int(declared) > self.body_limit + DRAIN_BYTES:
            raise BodyTooLarge(self.body_limit)
        self.request.connection.set_max_body_size(self.body_limit + DRAIN_BYTES)

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received <= self.body_limit:
            self._chunks.append(chunk)
        elif self._chunks:
            self._chunks = []  # over the limit: the rest is read and dropped

    @property
    def body_bytes(self) -> bytes:
        """The body; BodyTooLarge (413) when it was over the limit."""
        if self._received > self.body_limit:
            raise BodyTooLarge(self.body_limit)
        return b"".join(self._chunks)
