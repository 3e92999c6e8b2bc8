"""Temporary reviewer seats: the pure rules (names, end, caps, what a seat may launch, what
it may read), and tickets and seats in a real SQLite database: single use, expiry, bound to
their link's entry, caps counted in the same transaction."""

from __future__ import annotations

import inspect

import pytest

from kioskhub.hub.gallery import (
    api,
    export_api,
    pages,
    reexec_api,
    render_pages,
    reproduce_pages,
    seats_store,
    store,
    threads_api,
)
from kioskhub.hub.gallery.access import Entry, Viewer, can_manage, can_read
from kioskhub.hub.gallery.api_base import GalleryHandler
from kioskhub.hub.gallery.seats import (
    TICKET_SECONDS,
    SeatGrant,
    SeatRefused,
    cap_refusal,
    is_seat_name,
    launch_refusal,
    seat_expiry,
    seat_name,
)
from kioskhub.hub.schema.choices import Environment, ResourceProfile
from kioskhub.hub.schema.gallery import ReviewerSeats
from kioskhub.hub.schema.site import check_username

NOW = 1.8e9
SETTINGS = ReviewerSeats(enabled=True, hours=24, per_link=2, site_limit=3)


def test_seat_names_are_reserved_and_exact():
    assert seat_name("0a1b2c3d4e") == "rv-0a1b2c3d4e"
    assert is_seat_name("rv-0a1b2c3d4e")
    for name in ("rv-0a1b2c3d4", "rv-0A1B2C3D4E", "rv-../../etc", "ada", "ws-abc234-001"):
        assert not is_seat_name(name), name
    with pytest.raises(ValueError, match="10 lowercase hex digits"):
        seat_name("../x")
    with pytest.raises(ValueError, match="reserved for KioskHub"):
        check_username("rv-0a1b2c3d4e")


def test_a_seat_ends_after_its_hours_and_never_after_its_link():
    assert seat_expiry(NOW, 24, NOW + 7 * 86400) == NOW + 24 * 3600
    assert seat_expiry(NOW, 24, NOW + 3600) == NOW + 3600


def test_caps_say_which_is_full():
    assert cap_refusal(SETTINGS, 1, 2) is None
    assert cap_refusal(SETTINGS, 2, 2).startswith(
        "This reviewer link already has its 2 temporary seats in use"
    )
    assert cap_refusal(SETTINGS, 0, 3).startswith("All 3 temporary seats of this site are in use")


def test_a_seat_launches_only_what_everyone_may():
    environments = [Environment(name="open"), Environment(name="kept", groups=("physics",))]
    profiles = [ResourceProfile(name="small"), ResourceProfile(name="gpu", groups=("gpu",))]
    assert launch_refusal("open", "small", environments, profiles) is None
    assert launch_refusal("open", None, environments, profiles) is None
    assert "'kept' of this version is not open to everyone" in launch_refusal(
        "kept", "small", environments, profiles
    )
    assert "'mine' of this version is not open" in launch_refusal(
        "mine", "small", environments, profiles
    )
    assert "profile 'gpu' of this version is kept for some groups" in launch_refusal(
        "open", "gpu", environments, profiles
    )


def test_a_seat_reads_its_entry_alone_and_manages_nothing():
    seat = Viewer("rv-0a1b2c3d4e", seat=SeatGrant(entry_id=1, link_id=7, anonymous=True))
    own = Entry(1, "ada", "draft")
    assert can_read(own, seat)
    assert not can_read(Entry(2, "ada", "site"), seat)
    assert not can_manage(own, seat)
    assert not seat.shows_author
    assert Viewer("rv-0a1b2c3d4e", seat=SeatGrant(1, 7, anonymous=False)).shows_author


@pytest.fixture
def database(tmp_path):
    path = store.database(tmp_path)
    store.open_database(path)
    seats_store.create_tables(path)
    seats_store.create_tables(path)  # again, as on every start
    return path


def entry_with_link(database, expires: float = NOW + 86400) -> tuple[int, int]:
    version = {"title": "Fit", "abstract": "", "tags": [], "manifest": {"files": []},
               "pinning": {"environment": "default"}, "claims": {}}  # fmt: skip
    entry = store.create_entry(database, "ada", "draft", version)
    link = store.create_link(database, entry, store_secret(entry), "ada", expires, True)
    return entry, link


def store_secret(entry: int) -> str:
    return f"{entry:043d}"


def ticket(database, entry: int, link: int, now: float = NOW) -> str:
    return seats_store.mint_ticket(database, link, entry, 1, "default", "small", now)


def test_a_ticket_makes_one_seat_once(database):
    entry, link = entry_with_link(database, expires=NOW + 7 * 86400)
    secret = ticket(database, entry, link)
    shown = seats_store.ticket_for_page(database, secret, NOW + 1)
    assert (shown.title, shown.number, shown.environment) == ("Fit", 1, "default")
    seat = seats_store.redeem(database, secret, NOW + 1, SETTINGS)
    assert is_seat_name(seat.username) and seat.anonymous
    assert (seat.entry_id, seat.link_id, seat.profile) == (entry, link, "small")
    assert seat.expires == NOW + 1 + 24 * 3600
    assert seats_store.live_seat(database, seat.username, NOW + 2) == seat
    with pytest.raises(SeatRefused, match="was used already") as used:
        seats_store.redeem(database, secret, NOW + 2, SETTINGS)
    assert used.value.status == 410
    assert seats_store.seats_in_use(database, link) == (1, 1)


def test_forged_expired_and_altered_tickets_are_refused(database):
    entry, link = entry_with_link(database)
    other_entry, other_link = entry_with_link(database)
    with pytest.raises(SeatRefused, match="not one the gallery gave"):
        seats_store.redeem(database, "x" * 43, NOW, SETTINGS)
    late = ticket(database, entry, link)
    with pytest.raises(SeatRefused, match="has expired"):
        seats_store.redeem(database, late, NOW + TICKET_SECONDS, SETTINGS)
    crossed = seats_store.mint_ticket(database, other_link, entry, 1, "default", None, NOW)
    with pytest.raises(SeatRefused, match="for another reviewer link's entry"):
        seats_store.redeem(database, crossed, NOW + 1, SETTINGS)
    revoked = ticket(database, other_entry, other_link)
    store.revoke_link(database, other_entry, other_link)
    with pytest.raises(SeatRefused, match="revoked"):
        seats_store.redeem(database, revoked, NOW + 1, SETTINGS)
    assert seats_store.seats_in_use(database, link) == (0, 0)


def test_caps_hold_at_redemption_and_free_up_once_removed(database):
    entry, link = entry_with_link(database)
    other_entry, other_link = entry_with_link(database)
    tickets = [ticket(database, entry, link) for _ in range(3)]
    made = [seats_store.redeem(database, t, NOW, SETTINGS) for t in tickets[:2]]
    with pytest.raises(SeatRefused, match="already has its 2 temporary seats") as full:
        seats_store.redeem(database, tickets[2], NOW, SETTINGS)
    assert full.value.status == 429
    third = seats_store.redeem(database, ticket(database, other_entry, other_link), NOW, SETTINGS)
    with pytest.raises(SeatRefused, match="All 3 temporary seats of this site"):
        seats_store.redeem(database, ticket(database, other_entry, other_link), NOW, SETTINGS)
    # The unused ticket still works once a seat of its link has ended and gone.
    end = made[0].expires
    assert seats_store.due_seats(database, end - 1) == []
    everyone = {made[0].username, made[1].username, third.username}
    assert set(seats_store.due_seats(database, end)) == everyone
    assert seats_store.is_due(database, made[0].username, end)
    assert not seats_store.is_due(database, made[0].username, end - 1)
    assert seats_store.live_seat(database, made[0].username, end) is None
    seats_store.mark_removed(database, made[0].username, end)
    assert set(seats_store.due_seats(database, end)) == everyone - {made[0].username}
    assert seats_store.redeem(database, tickets[2], NOW + 60, SETTINGS).link_id == link


def test_a_seat_may_call_only_the_three_routes_that_copy_its_entry():
    """Every gallery handler method declares whether a seat may call it; only the version's
    record, notebook and files admit one."""
    admitted, declared = set(), 0
    for module in (api, export_api, pages, reexec_api, render_pages, reproduce_pages, threads_api):
        for _, handler in inspect.getmembers(module, inspect.isclass):
            if not issubclass(handler, GalleryHandler):
                continue
            for method in ("get", "post", "put", "delete"):
                function = getattr(handler, method, None)
                if function is None or not hasattr(function, "permission"):
                    continue
                declared += 1
                if function.seats:
                    admitted.add(f"{handler.__name__}.{method}")
    assert declared > 20
    assert admitted == {"VersionHandler.get", "NotebookHandler.get", "FileHandler.get"}
