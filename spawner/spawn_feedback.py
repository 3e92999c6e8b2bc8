"""What a user sees of a start in progress: its steps, for JupyterHub's progress API."""

from __future__ import annotations

import asyncio


class SpawnFeedback:
    """Start steps for the progress API (not for KubeSpawner, which reports pod events)."""

    def report(self, percent: int, message: str) -> None:
        """Record one step of the start in progress."""
        self._progress_events.append({"progress": percent, "message": message})

    async def progress(self):
        """Yield the steps of the start in progress as they happen."""
        sent = 0
        while True:
            events = getattr(self, "_progress_events", [])
            while sent < len(events):
                yield events[sent]
                sent += 1
            if not self._spawn_pending:
                return
            await asyncio.sleep(0.2)
