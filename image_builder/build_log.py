"""A build's log as it happens: lines, a percent and a phase, for live streams and the catalog."""

from __future__ import annotations

import asyncio
import time

MAX_LINE = 4000
MAX_LINES = 20000


class BuildLog:
    """Append-only log of one build that any number of readers can follow.

    ``line`` and ``progress`` record; ``changed`` wakes every reader waiting in ``wait``.
    Readers keep their own position (an index into ``lines``), so a reader that connects late
    first gets everything so far, then each new line.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.percent = 0
        self.phase = "queued"
        self.finished = False
        self.status = "queued"
        self._changed = asyncio.Event()
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        text = text.rstrip("\n")
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + " [line cut]"
        if len(self.lines) < MAX_LINES:
            self.lines.append(text)
        elif len(self.lines) == MAX_LINES:
            self.lines.append(f"[log cut after {MAX_LINES} lines]")
        self._notify()

    def progress(self, percent: int, phase: str) -> None:
        """Enter ``phase`` at ``percent`` (0–100); the log shows it as a line too."""
        self.percent = max(self.percent, min(100, percent))
        self.phase = phase
        self.line(f"[{self.percent:3d}%] {phase}")

    def finish(self, status: str) -> None:
        self.status = status
        self.finished = True
        if status == "ready":
            self.percent = 100
        self._notify()

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")

    async def wait(self, seen: int, timeout: float = 15.0) -> None:
        """Return when there is more than ``seen`` lines, the build finished, or on timeout."""
        if len(self.lines) > seen or self.finished:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
