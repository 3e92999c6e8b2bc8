"""Ending temporary reviewer seats: a loop in the gallery service.

Every ``SWEEP_S`` seconds the seats past their end and not yet removed
(``seats_store.due_seats``) are handed to the hub, one at a time
(``DELETE /hub/api/gallery/seats/<name>``, ``seats_hub``: server stopped, hub user deleted,
home emptied as its owner and removed, ``kh-`` account removed); each the hub removed is
marked removed. A seat the hub could not remove is logged and tried again next round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import quote

from . import seats_store
from .api_base import GalleryState
from .reexec_run import HubCalls, RunFailed

log = logging.getLogger("kioskhub.gallery")

SWEEP_S = 20
REMOVAL_TIMEOUT_S = 600


async def end_due_seats(state: GalleryState, hub: HubCalls, now: float | None = None) -> list[str]:
    """One round: the seats removed."""
    now = time.time() if now is None else now
    removed = []
    for name in await state.call(seats_store.due_seats, now):
        url = f"{hub.api_url}gallery/seats/{quote(name, safe='')}"
        try:
            code, reply = await hub.call("DELETE", url, timeout=REMOVAL_TIMEOUT_S)
        except RunFailed as error:
            code, reply = 0, {"message": str(error)}
        if code != 200:
            log.error("Gallery seat %s not removed (%s): %s", name, code, reply.get("message"))
            continue
        await state.call(seats_store.mark_removed, name, time.time())
        log.info("Gallery seat %s ended: server, hub user, home and account removed", name)
        removed.append(name)
    return removed


async def seat_expiry_loop(state: GalleryState, hub: HubCalls) -> None:
    """A round every ``SWEEP_S`` seconds, until cancelled; a failed round is logged."""
    while True:
        try:
            await end_due_seats(state, hub)
        except Exception:
            log.exception("Ending gallery seats failed")
        await asyncio.sleep(SWEEP_S)
