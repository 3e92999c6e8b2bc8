"""Who may join a workshop event now (pure): the rate limit, the window, the display name.

The join handler (``workshop_join``) asks these before it creates anything, so a refused
attempt leaves no account behind; each refusal carries the page's wording and status.
"""

from __future__ import annotations

import unicodedata
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from .workshop_store import Event

DISPLAY_NAME_MAX = 60
RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class JoinRefusal:
    """Why a join attempt is refused: ``reason`` names the case (for pages and tests),
    ``message`` is what the person reads, ``status`` the HTTP status of the page."""

    reason: str
    message: str
    status: int
    retry_after: int = 0
    """Seconds until the next attempt may succeed (rate limit only)."""


UNKNOWN_CODE = JoinRefusal(
    "unknown-code", "No event has this code; check it with your teacher.", 404
)


class JoinRateLimiter:
    """At most ``per_minute`` failed attempts (a wrong, revoked or closed code) per client
    address in any 60 seconds, in memory; an address past it is refused every join until
    its oldest failure leaves the window.

    Joins that succeed and pages of a right code are not counted: a whole class behind one
    address (a school's NAT) joins at once, while codes are guessed no faster than
    ``per_minute`` a minute. One instance serves every join request of the hub; addresses
    are forgotten once their failures are older than the window.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.attempts: dict[str, deque[float]] = {}

    def retry_after(self, address: str, now: float) -> float:
        """0 when ``address`` may try now, else the seconds to wait."""
        self._forget_before(now - RATE_WINDOW_SECONDS)
        times = self.attempts.get(address, ())
        if len(times) >= self.per_minute:
            return max(1.0, times[0] + RATE_WINDOW_SECONDS - now)
        return 0.0

    def failed(self, address: str, now: float) -> None:
        """Count a failed attempt of ``address``."""
        self.attempts.setdefault(address, deque()).append(now)

    def _forget_before(self, oldest: float) -> None:
        for address in list(self.attempts):
            times = self.attempts[address]
            while times and times[0] <= oldest:
                times.popleft()
            if not times:
                del self.attempts[address]


def rate_refusal(retry_after: float) -> JoinRefusal:
    seconds = int(retry_after + 0.999)
    return JoinRefusal(
        "rate-limited",
        f"Too many wrong join codes from your address; try again in {seconds} seconds.",
        429,
        seconds,
    )


def shown_time(moment: float) -> str:
    """A Unix time as people read it on the page: ``2026-12-01 09:00 UTC``."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")


def window_refusal(event: Event | None, now: float) -> JoinRefusal | None:
    """None when ``event`` (found by its code) may be joined at ``now``, else why not."""
    if event is None or not event.code:
        return UNKNOWN_CODE
    if now < event.start:
        return JoinRefusal(
            "not-open",
            f"“{event.title}” opens at {shown_time(event.start)}; come back then.",
            403,
        )
    if now >= event.end or event.expired is not None:
        return JoinRefusal("ended", f"“{event.title}” has ended.", 410)
    return None


def seats_refusal(event: Event) -> JoinRefusal:
    return JoinRefusal(
        "full",
        f"All {event.seats} seats of “{event.title}” are taken; ask your teacher.",
        409,
    )


def display_name_problem(name: str) -> str | None:
    """None for a usable display name (1–60 characters of any text but control
    characters), else what to change. It is only ever shown (escaped), never a path."""
    if not name:
        return "Type a name to show to your teacher."
    if len(name) > DISPLAY_NAME_MAX:
        return f"Use at most {DISPLAY_NAME_MAX} characters for your name ({len(name)} given)."
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return "Use a name without control characters or line breaks."
    return None
