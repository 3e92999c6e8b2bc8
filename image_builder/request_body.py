"""Request bodies with a limit, refused before they are read: a mixin for tornado handlers.

Tornado reads a whole body (up to 100 MB by default) before a handler runs. A handler that
mixes in ``LimitedBody`` streams its body instead (``stream_request_body``): ``prepare`` sees
only the headers, refuses a declared length over the limit with 413, and lowers the
connection's own limit, so that a chunked body is cut (400) as soon as it passes the limit.
A subclass sets ``body_limit`` (bytes) in ``initialize`` and may check headers first by
overriding ``check_before_body`` (the webhook's secret token).
"""

from __future__ import annotations

from tornado import web


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
        if declared is not None and int(declared) > self.body_limit:
            raise BodyTooLarge(self.body_limit)
        self.request.connection.set_max_body_size(self.body_limit)

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > self.body_limit:
            raise BodyTooLarge(self.body_limit)
        self._chunks.append(chunk)

    @property
    def body_bytes(self) -> bytes:
        return b"".join(self._chunks)
