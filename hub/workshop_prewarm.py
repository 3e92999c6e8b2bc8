"""Pre-warming a workshop event before its start, so a class joining at once is quick.

From ``workshops.prewarm_minutes`` before the start until the end:

- the event's environment: a site environment is ready as it is; one from the build
  catalog must have a finished build, else a warning is logged (the teacher's view shows
  the environment's state too) and checked again next round;
- with the local backend, the system accounts (``kh-ws-<event>-001`` …) and empty homes
  (0700, the account's) of the first ``prewarm_seats`` seats are made, as the spawner
  would make them at a first start (``local_accounts.ensure_system_account``,
  ``root_paths.hand_over_folder``). ``useradd`` takes the account database's lock, so 30
  participants starting at once wait on each other's; made ahead, their starts skip it.
  Seats never taken are removed with the event's temporary participants at expiry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from kioskhub.hub.schema.site import Site
from kioskhub.spawner import root_paths
from kioskhub.spawner.local_accounts import ensure_system_account

from . import workshop_store as store

log = logging.getLogger("kioskhub.workshops")

LOCAL_BACKEND = "local"


def events_to_prewarm(site: Site, events: list[store.Event], now: float) -> list[store.Event]:
    """Events whose pre-warming window (``prewarm_minutes`` before the start up to the
    end) holds ``now``."""
    lead = site.workshops.prewarm_minutes * 60
    if not lead:
        return []
    return [e for e in events if e.expired is None and e.start - lead <= now < e.end]


def seats_to_prewarm(site: Site, event: store.Event) -> list[str]:
    """The hub user names of the seats made ahead: the first ``prewarm_seats``."""
    if site.spawner.backend != LOCAL_BACKEND:
        return []
    count = min(site.workshops.prewarm_seats, event.seats)
    return [store.participant_name(event.event_id, n) for n in range(1, count + 1)]


def environment_problem(site: Site, event: store.Event, catalog_ready) -> str | None:
    """Why the event's environment is not ready to launch, or None. ``catalog_ready(name)``
    answers for built environments (None: not a catalog environment)."""
    if any(e.name == event.environment for e in site.environments):
        return None
    ready = catalog_ready(event.environment)
    if ready is None:
        return f"the environment {event.environment!r} is neither a site environment nor built"
    return None if ready else f"the environment {event.environment!r} has no finished build yet"


class Prewarm:
    """Pre-warming of one site's events; ``run_once`` is one round."""

    def __init__(self, site: Site, catalog_ready=lambda name: None):
        self.site = site
        self.catalog_ready = catalog_ready
        self.path = store.database(site.hub.state_dir)
        self.done: set[str] = set()
        """Events whose seats are made, by this run of the service."""

    async def run_once(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        events = await asyncio.to_thread(store.events, self.path)
        warmed = []
        for event in events_to_prewarm(self.site, events, now):
            problem = await asyncio.to_thread(
                environment_problem, self.site, event, self.catalog_ready
            )
            if problem:
                log.warning("Workshop %s starts soon but %s", event.event_id, problem)
            if event.event_id in self.done:
                continue
            seats = seats_to_prewarm(self.site, event)
            started = time.monotonic()
            try:
                for username in seats:
                    await self.make_seat(username)
            except Exception as error:  # noqa: BLE001 (logged, tried again next round)
                log.error("Workshop %s: pre-warming seats failed: %s", event.event_id, error)
                continue
            self.done.add(event.event_id)
            warmed.append(event.event_id)
            log.info(
                "Workshop %s: %d seats pre-warmed in %.1f s",
                event.event_id,
                len(seats),
                time.monotonic() - started,
            )
        return warmed

    async def make_seat(self, username: str) -> None:
        home = self.site.home.root / username
        account = await ensure_system_account(self.site, username, home)
        await asyncio.to_thread(_make_home, self.site, username, account.uid, account.gid)


def _make_home(site: Site, username: str, uid: int, gid: int) -> None:
    site.home.root.mkdir(parents=True, exist_ok=True)
    parent = root_paths.open_trusted_folder(str(site.home.root))
    try:
        root_paths.hand_over_folder(parent, username, root_paths.Owner(uid, gid))
    finally:
        os.close(parent)
