"""Who sees a gallery entry: each visibility against each kind of viewer, reviewer links
in and out of their validity, and who may change an entry."""

from __future__ import annotations

import pytest

from kioskhub.hub.gallery.access import (
    Entry,
    LinkUnusable,
    ReviewerLink,
    Viewer,
    can_manage,
    can_read,
    check_link,
    check_visibility,
    shows_author,
)

ADA = Viewer("ada", frozenset({"physics"}))
BOB = Viewer("bob", frozenset({"physics"}))
CY = Viewer("cy", frozenset({"chemistry"}))
ROOT = Viewer("root", admin=True)

DRAFT = Entry(1, "ada", "draft")
GROUP = Entry(2, "ada", "group:physics")
SITE = Entry(3, "ada", "site")
NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("entry", "viewer", "reads"),
    [
        (DRAFT, ADA, True),
        (DRAFT, BOB, False),
        (DRAFT, CY, False),
        (DRAFT, ROOT, True),
        (GROUP, ADA, True),
        (GROUP, BOB, True),
        (GROUP, CY, False),  # not a member
        (GROUP, ROOT, True),
        (SITE, ADA, True),
        (SITE, BOB, True),
        (SITE, CY, True),
        (SITE, ROOT, True),
    ],
)
def test_who_reads_each_visibility(entry, viewer, reads):
    assert can_read(entry, viewer) is reads


@pytest.mark.parametrize("entry", [DRAFT, GROUP, SITE])
def test_only_the_author_and_admins_manage_whatever_others_read(entry):
    assert can_manage(entry, ADA) and can_manage(entry, ROOT)
    assert not can_manage(entry, BOB) and not can_manage(entry, CY)


def test_a_user_named_like_a_group_reads_no_group_entry():
    assert not can_read(GROUP, Viewer("physics"))


def test_authors_share_with_their_own_groups_only():
    assert check_visibility(ADA, "draft") == "draft"
    assert check_visibility(ADA, "site") == "site"
    assert check_visibility(ADA, "group:physics") == "group:physics"
    with pytest.raises(PermissionError) as refused:
        check_visibility(ADA, "group:chemistry")
    assert str(refused.value) == (
        "you are not a member of the group 'chemistry'; share with one of your groups: physics"
    )
    assert check_visibility(ROOT, "group:chemistry") == "group:chemistry"
    with pytest.raises(PermissionError):
        check_visibility(ADA, "group:")
    with pytest.raises(ValueError, match="unknown visibility 'public': use 'draft', 'site'"):
        check_visibility(ADA, "public")


def test_a_link_opens_its_entry_while_valid():
    link = ReviewerLink(7, entry_id=1, expires=NOW + 60)
    check_link(link, 1, NOW)
    check_link(link, 1, NOW + 59.9)


def test_an_expired_link_says_so():
    link = ReviewerLink(7, entry_id=1, expires=NOW)
    with pytest.raises(LinkUnusable, match="this reviewer link has expired; ask the author"):
        check_link(link, 1, NOW)


def test_a_revoked_link_says_so_even_before_it_expires():
    link = ReviewerLink(7, entry_id=1, expires=NOW + 60, revoked=NOW - 1)
    with pytest.raises(LinkUnusable, match="this reviewer link was revoked by the author"):
        check_link(link, 1, NOW)


def test_a_link_opens_no_other_entry():
    link = ReviewerLink(7, entry_id=1, expires=NOW + 60)
    with pytest.raises(LookupError, match="another entry"):
        check_link(link, 2, NOW)


def test_only_an_anonymous_link_hides_the_author():
    assert shows_author(None)
    assert shows_author(ReviewerLink(7, 1, NOW + 60))
    assert not shows_author(ReviewerLink(7, 1, NOW + 60, anonymous=True))
