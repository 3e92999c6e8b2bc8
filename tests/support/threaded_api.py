"""An HTTP API simulation served from a tornado loop in a thread of its own.

Subclasses name their ``routes`` and ``not_found`` handler (each handler gets
``simulation=self``) and may start work on the loop in ``on_start`` and end it in
``on_stop``. Use ``with Simulation() as sim:``; ``sim.url`` is its base URL.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application


class ThreadedAPI:
    """A tornado application on 127.0.0.1 (a free port), run in a daemon thread."""

    name: ClassVar[str] = "simulation"
    routes: ClassVar[list[tuple[str, Any]]] = []
    not_found: ClassVar[Any] = None

    def __init__(self) -> None:
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self):
        sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        self._thread = threading.Thread(
            target=self._run, args=(sockets,), daemon=True, name=self.name
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the {self.name} did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def on_start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the simulation's loop before it serves its first request."""

    def on_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the simulation's thread after the loop stopped."""

    def _run(self, sockets) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        application = Application(
            [(pattern, handler, {"simulation": self}) for pattern, handler in self.routes],
            default_handler_class=self.not_found,
            default_handler_args={"simulation": self},
        )
        server = HTTPServer(application)
        server.add_sockets(sockets)
        self.on_start(loop)
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            server.stop()
            self.on_stop(loop)
