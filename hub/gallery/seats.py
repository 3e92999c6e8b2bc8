"""Temporary seats for reviewers without a lab account: the pure rules.

A reviewer who came by a reviewer link presses "Open in a temporary seat" on the version's
page (``seats_pages``). The gallery then mints a **ticket**: a single-use secret, valid for
``TICKET_SECONDS``, bound to the link, the entry and the version, of which only the sha256
is stored (``seats_store``). The hub's seat page (``seats_hub``) redeems it once: it makes
the hub user ``rv-<10 hex digits>`` (``SEAT_PREFIX``, which no sign-in may take), signs the
browser in as it, starts its server with the version's pinned environment and profile, and
sends it to the server's fetch endpoint, which copies the version into
``~/gallery/<entry>/v<N>/``.

A seat reads one entry, the link's, only while the link is in force, and through the few
API routes the copy needs; it publishes nothing, comments nowhere, lists nothing and belongs
to no group (``access.can_read``, ``api_base.requires``). After ``reviewer_seats.hours``
(never past the link's expiry) the gallery asks the hub to remove it
(``seats_expiry``): server, hub user, home and system account.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kioskhub.hub.schema.choices import Environment, ResourceProfile
from kioskhub.hub.schema.gallery import SEAT_PREFIX, ReviewerSeats
from kioskhub.spawner.launch_spec import allowed

TICKET_SECONDS = 300
TICKET = r"([A-Za-z0-9_-]{43})"
SEAT_NAME = re.compile(rf"^{re.escape(SEAT_PREFIX)}[0-9a-f]{{10}}$")
"""The only hub users the seat routes ever make or remove."""
HOUR = 3600.0


class SeatRefused(Exception):
    """No seat (or no ticket); the message says why and what to do."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SeatGrant:
    """What a seat may read: one entry, through one link (anonymous: the author is hidden)."""

    entry_id: int
    link_id: int
    anonymous: bool = False


def is_seat_name(name: str) -> bool:
    return bool(SEAT_NAME.match(name))


def seat_name(random_hex: str) -> str:
    """The seat's hub username from 10 random hex digits."""
    name = f"{SEAT_PREFIX}{random_hex}"
    if not is_seat_name(name):
        raise ValueError(f"{random_hex!r} is not 10 lowercase hex digits")
    return name


def seat_expiry(now: float, hours: int, link_expires: float) -> float:
    """When a seat made at ``now`` ends: after ``hours``, and never after its link."""
    return min(now + hours * HOUR, link_expires)


def cap_refusal(settings: ReviewerSeats, of_link: int, of_site: int) -> str | None:
    """Why no further seat may be made, with ``of_link`` and ``of_site`` seats in use."""
    if of_link >= settings.per_link:
        return (
            f"This reviewer link already has its {settings.per_link} temporary seats in use; "
            "try again when one has expired, ask the author for another link, or download "
            "the RO-Crate."
        )
    if of_site >= settings.site_limit:
        return (
            f"All {settings.site_limit} temporary seats of this site are in use; try again "
            "later, or download the RO-Crate."
        )
    return None


def launch_refusal(
    environment: str,
    profile: str | None,
    environments: Iterable[Environment],
    profiles: Iterable[ResourceProfile],
) -> str | None:
    """Why a seat (a user in no group, owning nothing) cannot start ``environment`` with
    ``profile``; ``environments``: what such a user may launch, as the spawner reads it."""
    if environment not in {e.name for e in allowed(environments, ())}:
        return (
            f"The environment {environment!r} of this version is not open to everyone at "
            "this site (it is the author's own, or kept for some groups), so a temporary "
            "seat cannot run it. Ask the author to share it with the whole site, or download "
            "the RO-Crate."
        )
    if profile and profile not in {p.name for p in allowed(profiles, ())}:
        return (
            f"The resource profile {profile!r} of this version is kept for some groups, so "
            "a temporary seat cannot use it. Ask the author for a lab account, or download "
            "the RO-Crate."
        )
    return None
