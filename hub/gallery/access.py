"""Who may read and who may change a gallery entry: pure rules, enforced by every handler.

An entry's ``visibility`` is ``draft`` (its author only), ``group:<name>`` (members of that
group, which the author belongs to) or ``site`` (every signed-in user). Admins read and
manage everything. A reviewer link grants reading one entry, without an account, while it
is neither expired nor revoked; it never grants changes. A temporary reviewer seat
(``seats``) is a hub user that reads only its link's entry, and changes nothing. Whoever
may not read an entry is told it does not exist (404); an expired or revoked link says so
(410).
"""

from __future__ import annotations

from dataclasses import dataclass

from .seats import SeatGrant

DRAFT, SITE, GROUP_PREFIX = "draft", "site", "group:"


@dataclass(frozen=True)
class Viewer:
    """A signed-in hub user, with their groups and admin flag as the hub reports them;
    ``seat``: what a temporary reviewer seat may read (None for everyone else)."""

    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False
    seat: SeatGrant | None = None

    @property
    def shows_author(self) -> bool:
        """Whether the author's name may be shown: not to a seat of an anonymous link."""
        return self.seat is None or not self.seat.anonymous


@dataclass(frozen=True)
class Entry:
    """What the rules need of an entry."""

    entry_id: int
    author: str
    visibility: str


@dataclass(frozen=True)
class ReviewerLink:
    """A reviewer link as stored: its entry, validity and whether it hides the author."""

    link_id: int
    entry_id: int
    expires: float
    revoked: float | None = None
    anonymous: bool = False


class LinkUnusable(Exception):
    """An expired or revoked link (410); the message says which."""

    status = 410


def check_visibility(viewer: Viewer, visibility: str) -> str:
    """``visibility`` when ``viewer`` may give it to their entry.

    ValueError for a visibility that does not exist, PermissionError for a group the viewer
    is not in; both say what to do.
    """
    if visibility in (DRAFT, SITE):
        return visibility
    if visibility.startswith(GROUP_PREFIX):
        group = visibility.removeprefix(GROUP_PREFIX)
        if group and (group in viewer.groups or viewer.admin):
            return visibility
        raise PermissionError(
            f"you are not a member of the group {group!r}; share with one of your groups: "
            f"{', '.join(sorted(viewer.groups)) or '(you are in none)'}"
        )
    raise ValueError(
        f"unknown visibility {visibility!r}: use 'draft', 'site' or 'group:<group name>'"
    )


def can_read(entry: Entry, viewer: Viewer) -> bool:
    """Whether the signed-in ``viewer`` may read ``entry`` (every version and file of it)."""
    if viewer.seat is not None:
        return entry.entry_id == viewer.seat.entry_id
    if viewer.admin or viewer.name == entry.author:
        return True
    if entry.visibility == SITE:
        return True
    if entry.visibility.startswith(GROUP_PREFIX):
        return entry.visibility.removeprefix(GROUP_PREFIX) in viewer.groups
    return False


def can_manage(entry: Entry, viewer: Viewer) -> bool:
    """Publish versions, change visibility, make and revoke links: the author or an admin."""
    if viewer.seat is not None:
        return False
    return viewer.admin or viewer.name == entry.author


def check_link(link: ReviewerLink, entry_id: int, now: float) -> None:
    """Raise LinkUnusable unless ``link`` opens ``entry_id`` at ``now``."""
    if link.entry_id != entry_id:
        raise LookupError("this reviewer link is for another entry")
    if link.revoked is not None:
        raise LinkUnusable("this reviewer link was revoked by the author; ask them for a new one")
    if now >= link.expires:
        raise LinkUnusable("this reviewer link has expired; ask the author for a new one")


def shows_author(link: ReviewerLink | None) -> bool:
    """Whether the author's name may be shown: always, except through an anonymous link."""
    return link is None or not link.anonymous
