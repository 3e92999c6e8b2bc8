"""Who may do what in a review thread, and how each writer is named: pure rules.

Anyone who may read an entry discusses it: signed-in readers (``access.can_read``) and
holders of a reviewer link in force (``access.check_link``; 410 once it expired or was
revoked). The entry's author answers like anyone else. A thread is resolved or reopened by
the entry's author, an admin, or whoever opened it (the same user, or the same link).

Names: a reviewer-link holder has no account and is shown as "Reviewer <n>", a number the
gallery gives each link of an entry the first time it writes (never an address or anything
else about the visitor). Through an anonymous link the entry's author is shown as "Author".
"""

from __future__ import annotations

from dataclasses import dataclass

from .access import Entry, ReviewerLink, Viewer, can_read, check_link

MAX_COMMENT_CHARS = 10_000
AUTHOR_ALIAS = "Author"


@dataclass(frozen=True)
class Actor:
    """Who asks: a signed-in hub user, or the holder of a reviewer link (exactly one)."""

    viewer: Viewer | None = None
    link: ReviewerLink | None = None

    def __post_init__(self) -> None:
        if (self.viewer is None) == (self.link is None):
            raise ValueError("an actor is either a signed-in viewer or a reviewer link")

    @property
    def writer(self) -> Writer:
        if self.viewer is not None:
            return Writer(user=self.viewer.name)
        return Writer(link_id=self.link.link_id)


@dataclass(frozen=True)
class Writer:
    """Who wrote a comment, opened or resolved a thread, as stored: a hub user's name or a
    reviewer link's id, and the link's reviewer number for the entry once it has one."""

    user: str | None = None
    link_id: int | None = None
    pseudonym: int | None = None

    def same_as(self, other: Writer) -> bool:
        if self.user is not None:
            return self.user == other.user
        return self.link_id is not None and self.link_id == other.link_id


class EntryHidden(LookupError):
    """An entry the actor may not read: told it does not exist (404)."""

    status = 404


class ThreadResolved(ValueError):
    """A comment on a resolved thread (409)."""

    status = 409


def check_discuss(entry: Entry, actor: Actor, now: float) -> None:
    """Raise unless ``actor`` may read ``entry`` and so open threads and comment on it:
    LookupError (404) for a reader who may not see it, LinkUnusable (410) for a link that
    expired or was revoked."""
    if actor.link is not None:
        check_link(actor.link, entry.entry_id, now)
    elif not can_read(entry, actor.viewer):
        raise EntryHidden(f"no gallery entry {entry.entry_id}")


def can_resolve(entry: Entry, opened_by: Writer, actor: Actor) -> bool:
    """Resolve or reopen a thread: the entry's author, an admin, or the thread's opener."""
    viewer = actor.viewer
    if viewer is not None and (viewer.admin or viewer.name == entry.author):
        return True
    return opened_by.same_as(actor.writer)


def check_resolve(entry: Entry, opened_by: Writer, actor: Actor) -> None:
    if not can_resolve(entry, opened_by, actor):
        raise PermissionError(
            "only the author of this entry, an admin or whoever opened this thread may "
            "resolve or reopen it"
        )


def check_comment(text: object) -> str:
    """The comment's text, stripped; ValueError saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise ValueError("'text' must be the comment, as a string")
    text = text.strip()
    if not text:
        raise ValueError("the comment is empty; write something")
    if len(text) > MAX_COMMENT_CHARS:
        raise ValueError(
            f"the comment has {len(text)} characters; at most {MAX_COMMENT_CHARS} are allowed"
        )
    return text


def display_name(writer: Writer, entry: Entry, *, shows_author: bool) -> str:
    """How ``writer`` is named to a viewer: a reviewer link as "Reviewer <n>", the entry's
    author as "Author" where the author is hidden, a signed-in user by their name."""
    if writer.user is None:
        return f"Reviewer {writer.pseudonym}" if writer.pseudonym else "Reviewer"
    if writer.user == entry.author and not shows_author:
        return AUTHOR_ALIAS
    return writer.user


def is_entry_author(writer: Writer, entry: Entry) -> bool:
    return writer.user is not None and writer.user == entry.author
