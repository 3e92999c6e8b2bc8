"""What a user sees of a KioskHub spawner besides the server: start progress and its choice.

Mixed into KioskHub's spawners, which supply ``launch_spec``, ``user_site`` and ``site``.
"""

from __future__ import annotations

import asyncio

from .launch_spec import ChoiceError


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


class ChoiceSummary:
    """The server's choice, as the hub's home page shows it."""

    @property
    def choice_summary(self) -> str:
        """'Python 3 · Small' for the hub's home page."""
        options = self.user_options or {}
        try:
            spec = self.launch_spec(options)
        except ChoiceError:
            return ", ".join(f"{k}: {v}" for k, v in options.items())
        environments = self.user_site().environments
        environment = next(e for e in environments if e.name == spec.environment.name)
        profile = next(p for p in self.site.profiles if p.name == spec.profile)
        return f"{environment.title} · {profile.title}"
