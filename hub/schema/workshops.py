"""The ``workshops:`` section of the site config: events that teachers run from one page.

A teacher (a member of ``teacher_groups``, or an admin) creates an event: environment,
resource profile, materials repository, seats and a time window. Participants join with
the event's link ``<hub>/hub/join/<code>`` and get temporary accounts, removed with their
homes after the end plus the grace period (``hub/workshop_*.py``).
"""

from __future__ import annotations

from pydantic import Field

from .choices import FolderName
from .section import Section

PARTICIPANT_PREFIX = "ws-"
"""Temporary participants are ``ws-<event>-<n>``; no one signs in with such a name."""


class WorkshopSettings(Section):
    enabled: bool = Field(
        False, description="Offer the Workshops page, join links and temporary seats."
    )
    teacher_groups: tuple[str, ...] = Field(
        (), description="JupyterHub groups whose members may create events (admins always may)."
    )
    max_seats: int = Field(300, ge=1, le=5000, description="Most seats one event may have.")
    max_days: int = Field(
        14, ge=1, le=366, description="Longest event, from its start to its end, in days."
    )
    grace_minutes: int = Field(
        60,
        ge=0,
        le=7 * 24 * 60,
        description="Default minutes after an event's end before its servers stop, its work "
        "is collected and its temporary accounts are removed; a teacher may set another.",
    )
    keep_collected_days: int = Field(
        30, ge=1, le=3650, description="Days the collected work of an ended event is kept."
    )
    schedule_every: int = Field(
        60,
        ge=5,
        le=3600,
        description="Seconds between two rounds of the workshop schedule (the hub's "
        "``workshop-schedule`` service): pre-warming events about to start, expiring "
        "events past their end plus grace, deleting collected work past keeping.",
    )
    prewarm_minutes: int = Field(
        10,
        ge=0,
        le=24 * 60,
        description="Minutes before an event's start from which it is pre-warmed: its "
        "environment checked, the system accounts and homes of its first seats made and "
        "their servers started (0: no pre-warming).",
    )
    prewarm_seats: int = Field(
        30,
        ge=0,
        le=5000,
        description="Seats per event (at most its own) made ahead of the start: their "
        "system accounts and homes (local backend), so a class joining at once does not "
        "wait on account creation, and their servers (``prewarm_servers``).",
    )
    prewarm_servers: bool = Field(
        True,
        description="Also start the servers of those first seats ahead, with the event's "
        "environment and profile, so the first ``prewarm_seats`` participants find theirs "
        "running (any backend; they use the site's capacity from ``prewarm_minutes`` "
        "before the start until taken or the event expires).",
    )
    join_attempts_per_minute: int = Field(
        10,
        ge=1,
        le=1000,
        description="Failed join attempts (wrong, revoked or closed codes) one client "
        "address may make per minute; past it, the address is refused every join until a "
        "minute after its oldest failure. Successful joins are not counted.",
    )
    materials_folder: FolderName = Field(
        "materials",
        description="Folder of each participant's home into which the event's materials "
        "are pulled (nbgitpuller); work is collected from it.",
    )
