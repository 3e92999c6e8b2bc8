"""A build's log as it happens: lines, a percent and a phase, for live streams and the catalog.

A log keeps its last ``max_bytes`` (``builder.build_log_mb``); earlier lines are dropped, and
``text`` says so in its first line. Line numbers stay absolute, so readers keep their place.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

MAX_LINE = 4000
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class KeptLines(Sequence):
    """The last lines of a log, indexed by their number in the whole log (dropped: skipped)."""

    def __init__(self) -> None:
        self._kept: list[str] = []
        self._start = 0
        self.dropped = 0
        self.size = 0

    def __len__(self) -> int:
        return self.dropped + len(self._kept) - self._start

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            first = max(start, self.dropped) if step > 0 else start
            return [self[i] for i in range(first, stop, step) if i >= self.dropped]
        if index < 0:
            index += len(self)
        if not self.dropped <= index < len(self):
            raise IndexError(index)
        return self._kept[self._start + index - self.dropped]

    def append(self, text: str) -> None:
        self._kept.append(text)
        self.size += len(text) + 1

    def drop_until(self, max_bytes: int) -> None:
        """Drop the oldest lines until the kept ones fit in ``max_bytes`` (one always stays)."""
        while self.size > max_bytes and len(self._kept) - self._start > 1:
            self.size -= len(self._kept[self._start]) + 1
            self._start += 1
            self.dropped += 1
        if self._start > 1024 and self._start * 2 > len(self._kept):
            del self._kept[: self._start]
            self._start = 0


class BuildLog:
    """Append-only log of one build that any number of readers can follow.

    ``line`` and ``progress`` record; ``changed`` wakes every reader waiting in ``wait``.
    Readers keep their own position (an index into ``lines``), so a reader that connects late
    first gets everything so far, then each new line.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.lines = KeptLines()
        self.max_bytes = max_bytes
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
        self.lines.append(text)
        self.lines.drop_until(self.max_bytes)
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
        """The kept log; a first line says how much was cut when the log outgrew its size."""
        kept = self.lines[self.lines.dropped :]
        cut = []
        if self.lines.dropped:
            cut = [
                f"[log cut: its first {self.lines.dropped} lines are not kept; "
                f"this is its last {self.max_bytes // 1024} KiB]"
            ]
        lines = cut + kept
        return "\n".join(lines) + ("\n" if lines else "")

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
