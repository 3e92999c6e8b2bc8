"""What a reviewer link's page says about temporary seats (``seats``).

``seat_offer`` tells the page whether to show "Open in a temporary seat"
(``gallery.reviewer_seats.enabled``), or why not: the pinned environment is gone, it is not
open to everyone (a seat belongs to no group), or the link's or the site's seats are all in
use. ``seats_pages`` asks ``seat_problem`` again before it mints a ticket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kioskhub.hub.schema.choices import Environment
from kioskhub.image_builder.spawn_catalog import environments_for

from . import seats_store
from .access import ReviewerLink
from .api_base import GalleryState
from .reproduce_build import current_build
from .seats import cap_refusal, launch_refusal


@dataclass(frozen=True)
class SeatOffer:
    """What a reviewer link's page shows about seats: the form's ``action``, or ``problem``."""

    hours: int
    action: str | None = None
    problem: str = ""


def seat_environments(state: GalleryState) -> tuple[Environment, ...]:
    """What a seat (no groups, owning nothing) may launch. Blocking: reads the catalog."""
    if state.catalog is None:
        return state.site.environments
    return environments_for(state.site, "", (), state.catalog)


async def seat_problem(state: GalleryState, link: ReviewerLink, pinned: dict[str, Any]) -> str:
    """Why no seat can open a version pinned to ``pinned`` through ``link`` now ("": none)."""
    check = await current_build(state, pinned)
    if not check.can_open:
        return check.message
    environments = await asyncio.to_thread(seat_environments, state)
    environment, profile = pinned.get("environment") or "", pinned.get("profile")
    problem = launch_refusal(environment, profile, environments, state.site.profiles)
    if problem:
        return problem
    of_link, of_site = await state.call(seats_store.seats_in_use, link.link_id)
    return cap_refusal(state.site.gallery.reviewer_seats, of_link, of_site) or ""


async def seat_offer(
    state: GalleryState, link: ReviewerLink, version: dict[str, Any], action: str
) -> SeatOffer | None:
    """The seat part of a reviewer link's page; None when the site offers no seats."""
    settings = state.site.gallery.reviewer_seats
    if not settings.enabled:
        return None
    problem = await seat_problem(state, link, version["pinning"])
    return SeatOffer(settings.hours, None if problem else action, problem)
