"""Pre-warming a workshop event before its start, so a class joining at once is quick.

From ``workshops.prewarm_minutes`` before the start until the end, every round of the
``workshop-schedule`` service:

- the event's environment must be one its participants may launch (as the spawner will
  decide at their starts: ``workshop_environments``), with a finished build
  where it is built (a catalog environment, or a config environment of kind
  ``repository``); else a warning is logged every round until it is, and no server is
  started for it;
- with the local backend, the system accounts (``kh-ws-<event>-001`` …) and empty homes
  (0700, the account's) of the first ``prewarm_seats`` seats are made, as the spawner
  would make them at a first start (``local_accounts.ensure_system_account``,
  ``root_paths.hand_over_folder``). ``useradd`` takes the account database's lock, so 30
  participants starting at once wait on each other's; made ahead, their starts skip it;
- with ``prewarm_servers``, the hub starts the servers of those seats not taken yet with
  the event's environment and profile (``workshop_prewarm_api``, asked by the service):
  the first participants to join find their server running and wait only for the
  materials and a kernel. Servers culled while waiting are started again next round.

Seats never taken are removed with the event's temporary participants at expiry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from kioskhub.hub.schema.choices import Environment
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


def prewarmed_seats(site: Site, event: store.Event) -> list[str]:
    """The hub user names of the seats made ahead, on any backend: the first
    ``prewarm_seats`` (at most the event's own)."""
    count = min(site.workshops.prewarm_seats, event.seats)
    return [store.participant_name(event.event_id, n) for n in range(1, count + 1)]


def seats_to_prewarm(site: Site, event: store.Event) -> list[str]:
    """The seats whose system accounts and homes are made ahead (local backend only)."""
    return prewarmed_seats(site, event) if site.spawner.backend == LOCAL_BACKEND else []


def servers_to_prewarm(site: Site, event: store.Event, temporary_taken: int) -> list[str]:
    """The seats whose servers run ahead: the pre-warmed seats no participant took yet
    (temporary participants take seats in order, ``workshop_store.take_seat``)."""
    if not site.workshops.prewarm_servers:
        return []
    return prewarmed_seats(site, event)[temporary_taken:]


def environment_problem(event: store.Event, launchable: tuple[Environment, ...]) -> str | None:
    """Why the event's environment is not ready to launch, or None. ``launchable``: what
    the event's participants may launch, as the spawn form offers it (config environments
    of kind ``repository`` stay so until their first build)."""
    environment = next((e for e in launchable if e.name == event.environment), None)
    if environment is None:
        return (
            f"the environment {event.environment!r} is not one that its participants may "
            "launch (not built yet, removed, or no longer shared with everyone)"
        )
    if environment.kind == "repository":
        return f"the environment {event.environment!r} has no finished build yet"
    return None


class HubServers(Protocol):
    """What pre-warming asks of the hub's REST API (``workshop_schedule.HubClient``)."""

    async def prewarm_servers(self, event_id: str) -> dict[str, str]: ...


class Prewarm:
    """Pre-warming of one site's events; ``run_once`` is one round."""

    def __init__(
        self,
        site: Site,
        launchable: Callable[[store.Event], tuple[Environment, ...]] | None = None,
        hub: HubServers | None = None,
    ):
        self.site = site
        self.launchable = launchable or (lambda event: site.environments)
        """``launchable(event)``: what the event's participants may launch (blocking); the
        config's environments when not given."""
        self.hub = hub
        """The hub, to start the seats' servers (None: accounts and homes only)."""
        self.path = store.database(site.hub.state_dir)
        self.done: set[str] = set()
        """Events whose seats are made, by this run of the service."""

    async def run_once(self, now: float | None = None) -> list[str]:
        """One round; the events whose seats were made this round."""
        now = time.time() if now is None else now
        events = await asyncio.to_thread(store.events, self.path)
        warmed = []
        for event in events_to_prewarm(self.site, events, now):
            launchable = await asyncio.to_thread(self.launchable, event)
            problem = environment_problem(event, launchable)
            if problem:
                log.warning("Workshop %s starts soon but %s", event.event_id, problem)
            if event.event_id not in self.done and await self.make_seats(event):
                warmed.append(event.event_id)
            if not problem and self.hub is not None and self.site.workshops.prewarm_servers:
                await self.start_servers(event)
        return warmed

    async def make_seats(self, event: store.Event) -> bool:
        seats = seats_to_prewarm(self.site, event)
        started = time.monotonic()
        try:
            for username in seats:
                await self.make_seat(username)
        except Exception as error:  # noqa: BLE001 (logged, tried again next round)
            log.error("Workshop %s: pre-warming seats failed: %s", event.event_id, error)
            return False
        self.done.add(event.event_id)
        log.info(
            "Workshop %s: %d seats pre-warmed in %.1f s",
            event.event_id,
            len(seats),
            time.monotonic() - started,
        )
        return True

    async def start_servers(self, event: store.Event) -> None:
        """Ask the hub to start the untaken seats' servers; what it said, in the log."""
        try:
            servers = await self.hub.prewarm_servers(event.event_id)
        except Exception as error:  # noqa: BLE001 (logged, tried again next round)
            log.error("Workshop %s: pre-warming servers failed: %s", event.event_id, error)
            return
        counts = Counter(servers.values())
        if set(counts) - {"running"}:
            log.info(
                "Workshop %s: servers of untaken seats: %s",
                event.event_id,
                ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
            )

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
