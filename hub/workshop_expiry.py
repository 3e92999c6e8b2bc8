"""Clean expiry of workshop events: after the end plus grace, nothing of the event is left.

For each event past ``closes`` and not yet ``expired``, in this order:

1. its join code is revoked (no one joins any more);
2. its temporary participants' servers stop;
3. the work of every participant is collected (``collect_work``);
4. each temporary participant is removed: the hub user (JupyterHub forgets them, their
   cookies stop working), their home folder (``workshop_home_removal``: emptied as the
   home's owner, ``workshop_home_owner``: the participant's ``kh-`` account on ``local``,
   the pods' account on ``podman``; nothing followed, by root or the owner), and on
   ``local`` their system account (only KioskHub's own ``kh-ws-…``,
   ``local_accounts.remove_system_account``; podman participants have none, and
   podman's record of their home volume goes instead);
5. lab accounts that joined only leave the event's group: their account, home and
   servers are theirs;
6. the event is marked expired, once every step succeeded. A step that failed is logged
   and the whole is tried again next round (every step is idempotent; the collection is
   done once per run of the service).

Collected archives older than ``keep_collected_days`` are deleted (``prune_collected``).
The plan (``due_events``, ``expiry_plan``, ``archives_past_keeping``) is pure; the rest
runs in the ``workshop-schedule`` service (``workshop_schedule``), as root.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kioskhub.hub.schema.site import Site
from kioskhub.hub.schema.workshops import PARTICIPANT_PREFIX
from kioskhub.spawner import root_paths
from kioskhub.spawner.local_accounts import AccountNotOurs, account_name, remove_system_account
from kioskhub.spawner.podman_cli import run_podman
from kioskhub.spawner.podman_plan import home_claim_name, hub_tag

from . import workshop_collect
from . import workshop_store as store
from .workshop_home_owner import HomeOwnerRefused, has_system_account, temporary_home_owner
from .workshop_home_removal import HomeNotRemoved, remove_home
from .workshop_prewarm import prewarmed_seats

log = logging.getLogger("kioskhub.workshops")

TEMPORARY_NAME = re.compile(rf"^{re.escape(PARTICIPANT_PREFIX)}[a-z0-9]+-[0-9]{{3,}}$")
"""The only hub users expiry ever deletes: ``ws-<event>-<nnn>``."""
DAY_S = 86400


class HubUsers(Protocol):
    """What expiry asks of the hub's REST API (``workshop_schedule.HubClient``)."""

    async def stop_server(self, username: str) -> None: ...
    async def delete_user(self, username: str) -> None: ...
    async def leave_group(self, group: str, usernames: list[str]) -> None: ...


@dataclass(frozen=True)
class TemporaryRemoval:
    username: str
    account: str
    home: Path


@dataclass(frozen=True)
class EventExpiry:
    """What expiring one event removes."""

    event_id: str
    group: str
    temporary: tuple[TemporaryRemoval, ...]
    lab_accounts: tuple[str, ...]
    """Lab accounts that joined: they only leave ``group``."""


def due_events(events: list[store.Event], now: float) -> list[store.Event]:
    """Events past their end plus grace whose clean-up is not done yet."""
    return [e for e in events if e.expired is None and e.closes <= now]


def expiry_plan(
    site: Site, event: store.Event, participants: list[store.Participant]
) -> EventExpiry:
    """The removals of ``event``: a participant is temporary only if the store says so
    and the name is an event seat's (``ws-<event>-<nnn>`` of this very event). Seats
    pre-warmed but never taken are removed too."""
    temporary, lab = [], []
    taken = {p.username for p in participants}
    participants = [
        *participants,
        *(
            store.Participant(event.event_id, name, "", 0.0, temporary=True)
            for name in prewarmed_seats(site, event)
            if name not in taken
        ),
    ]
    for participant in participants:
        if participant.event_id != event.event_id:
            continue
        if participant.temporary and is_seat_of(participant.username, event.event_id):
            temporary.append(
                TemporaryRemoval(
                    participant.username,
                    account_name(site, participant.username),
                    site.home.root / participant.username,
                )
            )
        else:
            lab.append(participant.username)
    return EventExpiry(event.event_id, event.group, tuple(temporary), tuple(lab))


def is_seat_of(username: str, event_id: str) -> bool:
    return bool(TEMPORARY_NAME.match(username)) and username.startswith(
        f"{PARTICIPANT_PREFIX}{event_id}-"
    )


def archives_past_keeping(
    entries: list[tuple[str, float]], now: float, keep_days: int
) -> list[str]:
    """The names among (name, modified) older than ``keep_days``."""
    return sorted(
        name
        for name, modified in entries
        if workshop_collect.ARCHIVE_PATTERN.fullmatch(name) and now - modified > keep_days * DAY_S
    )


# ---- doing it ----------------------------------------------------------------------------


class Expiry:
    """The expiry of one site's events; ``run_once`` is one round."""

    def __init__(self, site: Site, hub: HubUsers):
        self.site = site
        self.hub = hub
        self.path = store.database(site.hub.state_dir)
        self.collected: dict[str, object] = {}
        """Event id → its archive, collected by this run of the service."""

    async def run_once(self, now: float | None = None) -> list[str]:
        """Expire every due event; the events expired this round."""
        now = time.time() if now is None else now
        events = await asyncio.to_thread(store.events, self.path)
        done = []
        for event in due_events(events, now):
            participants = await asyncio.to_thread(store.participants, self.path, event.event_id)
            problems = await self.expire(event, participants)
            if problems:
                for problem in problems:
                    log.error("Workshop %s: expiry incomplete: %s", event.event_id, problem)
                continue
            await asyncio.to_thread(store.update_event, self.path, event.event_id, expired=now)
            log.info("Workshop %s: expired", event.event_id)
            done.append(event.event_id)
        return done

    async def expire(self, event: store.Event, participants: list[store.Participant]) -> list[str]:
        """Steps 1-5 for ``event``; the problems (empty: all done)."""
        plan = expiry_plan(self.site, event, participants)
        if event.code:
            await asyncio.to_thread(store.update_event, self.path, event.event_id, code="")
            log.info("Workshop %s: join code revoked", event.event_id)
        problems: list[str] = []
        stops = await asyncio.gather(
            *(self.hub.stop_server(t.username) for t in plan.temporary), return_exceptions=True
        )
        problems += [
            f"stopping {t.username}: {r}" for t, r in zip(plan.temporary, stops, strict=True) if r
        ]
        if problems:
            return problems
        if event.event_id not in self.collected:
            try:
                self.collected[event.event_id] = await collect_work(self.site, event, participants)
            except Exception as error:  # noqa: BLE001 (any failure keeps the homes)
                return [f"collecting work failed, nothing removed: {error}"]
            log.info(
                "Workshop %s: work collected: %s", event.event_id, self.collected[event.event_id]
            )
        for removal in plan.temporary:
            problems += await self.remove_temporary(removal)
        if plan.lab_accounts:
            try:
                await self.hub.leave_group(plan.group, list(plan.lab_accounts))
                log.info(
                    "Workshop %s: %s left %s",
                    event.event_id,
                    ", ".join(plan.lab_accounts),
                    plan.group,
                )
            except Exception as error:  # noqa: BLE001
                problems.append(f"removing lab accounts from {plan.group}: {error}")
        return problems

    async def remove_temporary(self, removal: TemporaryRemoval) -> list[str]:
        return await remove_temporary(self.site, self.hub, removal)


async def remove_temporary(
    site: Site, hub: HubUsers, removal: TemporaryRemoval, who: str = "Workshop participant"
) -> list[str]:
    """The hub user, then the home (as its owner), then the system account (local); the
    problems (empty: all done). Also removes the gallery's temporary reviewer seats."""
    backend = site.spawner.backend
    try:
        await hub.delete_user(removal.username)
        log.info("%s %s: hub user deleted", who, removal.username)
        owner = await asyncio.to_thread(temporary_home_owner, site, removal.username)
        if owner is not None:
            done = await remove_home(removal.home, owner.uid, owner.gid, shared=owner.shared)
            log.info("%s %s: %s", who, removal.username, done)
        elif await asyncio.to_thread(os.path.lexists, removal.home):
            return [f"{removal.home} is left: its account {removal.account} is gone"]
        if has_system_account(backend):
            done = await remove_system_account(site, removal.username, removal.home)
            log.info("%s %s: %s", who, removal.username, done)
        if backend == "podman":
            done = await remove_home_volume(site, removal.username)
            log.info("%s %s: %s", who, removal.username, done)
    except (HomeNotRemoved, AccountNotOurs, HomeOwnerRefused) as error:
        return [f"{removal.username}: {error}"]
    except Exception as error:  # noqa: BLE001 (logged, retried next round)
        return [f"{removal.username}: {error}"]
    return []


async def remove_home_volume(site: Site, username: str) -> str:
    """Forget the podman volume bound to a removed home (podman only; its folder is gone
    by now, so nothing but podman's record of it goes)."""
    name = home_claim_name(username, hub_tag(site.hub.state_dir))
    await run_podman("volume", "rm", "--force", name)
    return f"removed the home volume {name}"


async def collect_work(site: Site, event: store.Event, participants: list[store.Participant]):
    """Collect the event's work (``workshop_collect.collect``, blocking, in a thread); its
    archive's path, or None where this backend cannot collect (said in the log)."""
    try:
        return await asyncio.to_thread(workshop_collect.collect, site, event, participants)
    except workshop_collect.CollectUnavailable as why:
        log.warning("Workshop %s: nothing collected: %s", event.event_id, why)
        return None


def collected_folder(site: Site) -> Path:
    """The root-only folder that ``workshop_collect`` writes archives to, one folder per event."""
    return site.hub.state_dir / "workshops"


def prune_collected(site: Site, now: float | None = None) -> list[str]:
    """Delete archives (files, or files one folder down) older than
    ``workshops.keep_collected_days``; the paths deleted. Blocking; root's own folder,
    opened and checked, entries never followed."""
    now = time.time() if now is None else now
    folder = collected_folder(site)
    if not folder.is_dir():
        return []
    deleted: list[str] = []
    fd = root_paths.open_trusted_folder(str(folder))
    try:
        deleted += _prune_in(fd, str(folder), now, site.workshops.keep_collected_days, True)
    finally:
        os.close(fd)
    for path in deleted:
        log.info(
            "Workshop archive deleted after %d days: %s", site.workshops.keep_collected_days, path
        )
    return deleted


def _prune_in(fd: int, where: str, now: float, keep_days: int, descend: bool) -> list[str]:
    files, deleted = [], []
    for name in os.listdir(fd):
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISREG(info.st_mode):
            files.append((name, info.st_mtime))
        elif stat.S_ISDIR(info.st_mode) and descend:
            sub = root_paths.open_beneath(fd, name, os.O_RDONLY | os.O_DIRECTORY)
            try:
                deleted += _prune_in(sub, f"{where}/{name}", now, keep_days, False)
                empty = not os.listdir(sub)
            finally:
                os.close(sub)
            if empty and now - info.st_mtime > keep_days * DAY_S:
                os.rmdir(name, dir_fd=fd)
    for name in archives_past_keeping(files, now, keep_days):
        os.unlink(name, dir_fd=fd)
        deleted.append(f"{where}/{name}")
    return deleted
