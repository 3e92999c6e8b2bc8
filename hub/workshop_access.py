"""Who may do what with workshops (pure): teachers create events and act on their own.

A teacher is an admin or a member of one of ``workshops.teacher_groups``. A teacher acts
only on their own events, and through them only on those events' participants; admins on
every event.
"""

from __future__ import annotations

from kioskhub.hub.schema.site import Site

from .workshop_store import Event, Participant


def may_teach(site: Site, groups: tuple[str, ...] | list[str], is_admin: bool) -> bool:
    """Whether a user may create events."""
    return site.workshops.enabled and (
        is_admin or bool(set(groups) & set(site.workshops.teacher_groups))
    )


def may_manage(event: Event, username: str, is_admin: bool) -> bool:
    """Whether a user may see and act on ``event`` (its class view, code, actions)."""
    return is_admin or event.teacher == username


def participant_of(participants: list[Participant], username: str) -> Participant | None:
    """The participant ``username`` of an event's list, or None: teachers' actions on a
    user go through this, so a name outside the event is refused."""
    return next((p for p in participants if p.username == username), None)
