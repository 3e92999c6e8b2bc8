"""Review threads' rules for every kind of viewer: who may discuss an entry, who may resolve
a thread, how each writer is named, and what a comment may hold."""

from __future__ import annotations

import pytest

from kioskhub.hub.gallery.access import Entry, LinkUnusable, ReviewerLink, Viewer
from kioskhub.hub.gallery.threads_access import (
    MAX_COMMENT_CHARS,
    Actor,
    EntryHidden,
    Writer,
    can_resolve,
    check_comment,
    check_discuss,
    check_resolve,
    display_name,
)

ADA = Viewer("ada", frozenset({"physics"}))  # the author
BOB = Viewer("bob", frozenset({"physics"}))
CY = Viewer("cy", frozenset({"chemistry"}))
ROOT = Viewer("root", admin=True)
NOW = 1_000_000.0
GROUP = Entry(2, "ada", "group:physics")
DRAFT = Entry(1, "ada", "draft")
LINK = ReviewerLink(7, 2, expires=NOW + 60)
ANONYMOUS = ReviewerLink(8, 2, expires=NOW + 60, anonymous=True)
OTHER_LINK = ReviewerLink(9, 2, expires=NOW + 60)


@pytest.mark.parametrize(
    ("entry", "actor", "allowed"),
    [
        (GROUP, Actor(viewer=ADA), True),
        (GROUP, Actor(viewer=BOB), True),
        (GROUP, Actor(viewer=CY), False),
        (GROUP, Actor(viewer=ROOT), True),
        (DRAFT, Actor(viewer=BOB), False),
        (DRAFT, Actor(viewer=ADA), True),
        (GROUP, Actor(link=LINK), True),
        (GROUP, Actor(link=ANONYMOUS), True),
    ],
)
def test_who_may_discuss(entry, actor, allowed):
    if allowed:
        check_discuss(entry, actor, NOW)
    else:
        with pytest.raises(EntryHidden, match="no gallery entry") as raised:
            check_discuss(entry, actor, NOW)
        assert raised.value.status == 404


@pytest.mark.parametrize(
    ("link", "message"),
    [
        (ReviewerLink(7, 2, expires=NOW), "has expired"),
        (ReviewerLink(7, 2, expires=NOW + 60, revoked=NOW - 1), "was revoked"),
    ],
)
def test_an_unusable_link_cannot_discuss(link, message):
    with pytest.raises(LinkUnusable, match=message):
        check_discuss(GROUP, Actor(link=link), NOW)


def test_a_link_opens_only_its_own_entry():
    with pytest.raises(LookupError):
        check_discuss(DRAFT, Actor(link=LINK), NOW)


BOB_OPENED = Writer(user="bob")
LINK_OPENED = Writer(link_id=7, pseudonym=1)


@pytest.mark.parametrize(
    ("opened_by", "actor", "allowed"),
    [
        (BOB_OPENED, Actor(viewer=ADA), True),  # the author
        (BOB_OPENED, Actor(viewer=ROOT), True),  # an admin
        (BOB_OPENED, Actor(viewer=BOB), True),  # the opener
        (BOB_OPENED, Actor(viewer=CY), False),
        (BOB_OPENED, Actor(link=LINK), False),
        (LINK_OPENED, Actor(link=LINK), True),  # the opener's link
        (LINK_OPENED, Actor(link=OTHER_LINK), False),
        (LINK_OPENED, Actor(viewer=BOB), False),
        (LINK_OPENED, Actor(viewer=ADA), True),
    ],
)
def test_who_may_resolve(opened_by, actor, allowed):
    assert can_resolve(GROUP, opened_by, actor) is allowed
    if not allowed:
        with pytest.raises(PermissionError, match="whoever opened this thread"):
            check_resolve(GROUP, opened_by, actor)


def test_a_user_named_like_no_one_is_not_a_link():
    # A writer without a user and a link is nobody: never the same as another.
    assert not Writer().same_as(Writer())


@pytest.mark.parametrize(
    ("writer", "shows_author", "name"),
    [
        (Writer(user="ada"), True, "ada"),
        (Writer(user="ada"), False, "Author"),
        (Writer(user="bob"), False, "bob"),
        (Writer(user="bob"), True, "bob"),
        (Writer(link_id=7, pseudonym=1), True, "Reviewer 1"),
        (Writer(link_id=8, pseudonym=2), False, "Reviewer 2"),
    ],
)
def test_names(writer, shows_author, name):
    assert display_name(writer, GROUP, shows_author=shows_author) == name


def test_an_actor_is_a_viewer_or_a_link():
    with pytest.raises(ValueError):
        Actor()
    with pytest.raises(ValueError):
        Actor(viewer=BOB, link=LINK)
    assert Actor(link=LINK).writer == Writer(link_id=7)
    assert Actor(viewer=BOB).writer == Writer(user="bob")


def test_comments():
    assert check_comment("  fine  ") == "fine"
    assert check_comment("x" * MAX_COMMENT_CHARS) == "x" * MAX_COMMENT_CHARS
    with pytest.raises(ValueError, match="the comment is empty; write something"):
        check_comment(" \n ")
    with pytest.raises(ValueError, match="has 10001 characters; at most 10000 are allowed"):
        check_comment("x" * (MAX_COMMENT_CHARS + 1))
    with pytest.raises(ValueError, match="'text' must be the comment"):
        check_comment(None)
