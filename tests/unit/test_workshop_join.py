"""Joining a workshop, its pure parts: the rate limit, the window, seats, display names,
the materials link and the reading of nbgitpuller's event stream."""

from __future__ import annotations

import pytest

from kioskhub.hub import workshop_store
from kioskhub.hub.schema.site import Site
from kioskhub.hub.workshop_admission import (
    JoinRateLimiter,
    display_name_problem,
    seats_refusal,
    shown_time,
    window_refusal,
)
from kioskhub.hub.workshop_join import (
    JoinCodeFormHandler,
    JoinEventHandler,
    is_lab_account,
    join_hub_settings,
)
from kioskhub.hub.workshop_materials import pull_link, pull_outcome
from kioskhub.hub.workshop_store import Event

START = 1_800_000_000.0  # 2027-01-15 08:00 UTC
END = START + 3 * 3600


def event(**changes) -> Event:
    values = dict(
        event_id="abc234",
        title="Intro <b>Python</b>",
        teacher="grace",
        environment="default",
        profile="small",
        materials_repo="https://git.example.org/school/intro.git",
        materials_ref="main",
        seats=30,
        start=START,
        end=END,
        grace_seconds=3600.0,
        code="ABCDEFGH23",
        created=START - 86400,
    )
    return Event(**(values | changes))


def failures(limiter: JoinRateLimiter, address: str, *times: float) -> None:
    for moment in times:
        limiter.failed(address, moment)


def test_the_limiter_allows_the_configured_failures_per_minute_per_address():
    limiter = JoinRateLimiter(3)
    failures(limiter, "10.0.0.1", 100.0, 101.0)
    assert limiter.retry_after("10.0.0.1", 102.0) == 0.0

    failures(limiter, "10.0.0.1", 102.0)

    assert limiter.retry_after("10.0.0.1", 110.0) == 50.0
    assert limiter.retry_after("10.0.0.2", 110.0) == 0.0
    # The first failure leaves the window at 160 s: one more may come.
    assert limiter.retry_after("10.0.0.1", 160.5) == 0.0
    failures(limiter, "10.0.0.1", 160.5)
    # The next leaves at 161 s; a wait is never told as less than a second.
    assert limiter.retry_after("10.0.0.1", 160.6) == 1.0


def test_a_class_behind_one_address_is_never_limited_by_its_joins():
    limiter = JoinRateLimiter(2)

    assert all(limiter.retry_after("school-nat", 100.0 + i / 10) == 0.0 for i in range(300))


def test_the_limiter_forgets_addresses_that_stopped_trying():
    limiter = JoinRateLimiter(2)
    failures(limiter, "10.0.0.1", 0.0)
    failures(limiter, "10.0.0.2", 30.0)

    limiter.retry_after("10.0.0.3", 61.0)

    assert sorted(limiter.attempts) == ["10.0.0.2"]


def test_a_refused_attempt_is_not_counted_again():
    limiter = JoinRateLimiter(1)
    failures(limiter, "a", 0.0)

    assert limiter.retry_after("a", 10.0) == 50.0
    assert limiter.retry_after("a", 20.0) == 40.0
    assert limiter.retry_after("a", 60.0) == 0.0


@pytest.mark.parametrize(
    ("now", "reason", "message", "status"),
    [
        (
            START - 1,
            "not-open",
            "“Intro <b>Python</b>” opens at 2027-01-15 08:00 UTC; come back then.",
            403,
        ),
        (END, "ended", "“Intro <b>Python</b>” has ended.", 410),
    ],
)
def test_outside_the_window_the_refusal_says_which(now, reason, message, status):
    refusal = window_refusal(event(), now)

    assert (refusal.reason, refusal.message, refusal.status) == (reason, message, status)


def test_inside_the_window_the_event_may_be_joined():
    assert window_refusal(event(), START) is None
    assert window_refusal(event(), END - 1) is None


@pytest.mark.parametrize("found", [None, event(code="")])
def test_a_wrong_or_revoked_code_says_no_event_has_it(found):
    refusal = window_refusal(found, START + 60)

    assert refusal.reason == "unknown-code"
    assert refusal.message == "No event has this code; check it with your teacher."


def test_an_expired_event_has_ended_even_if_its_times_were_moved():
    assert window_refusal(event(expired=END + 10), START + 60).reason == "ended"


def test_a_full_event_says_how_many_seats():
    refusal = seats_refusal(event(seats=2))

    assert (refusal.reason, refusal.status) == ("full", 409)
    assert refusal.message == "All 2 seats of “Intro <b>Python</b>” are taken; ask your teacher."


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "Type a name to show to your teacher."),
        ("x" * 61, "Use at most 60 characters for your name (61 given)."),
        ("Ada\nLovelace", "Use a name without control characters or line breaks."),
        ("Ada\x00", "Use a name without control characters or line breaks."),
    ],
)
def test_display_names_that_cannot_be_shown_are_refused(name, problem):
    assert display_name_problem(name) == problem


@pytest.mark.parametrize(
    "name", ["Ada", "<script>alert(1)</script>", "../../etc", "x" * 60, "Zoë 🐍 李"]
)
def test_any_other_text_is_a_display_name(name):
    assert display_name_problem(name) is None


def test_times_are_shown_in_utc():
    assert shown_time(START) == "2027-01-15 08:00 UTC"


def test_the_materials_link_pulls_the_ref_into_the_folder_and_opens_it():
    assert pull_link(event(), "materials") == (
        "git-pull?repo=https%3A%2F%2Fgit.example.org%2Fschool%2Fintro.git&branch=main"
        "&targetPath=materials&urlpath=lab%2Ftree%2Fmaterials"
    )


def test_without_a_ref_nbgitpuller_takes_the_default_branch():
    assert pull_link(event(materials_ref="", materials_repo="file:///srv/m.git"), "work") == (
        "git-pull?repo=file%3A%2F%2F%2Fsrv%2Fm.git&targetPath=work&urlpath=lab%2Ftree%2Fwork"
    )


@pytest.mark.parametrize(
    ("stream", "outcome"),
    [
        (
            'data: {"output": "Fetching", "phase": "syncing"}\n\ndata: {"phase": "finished"}\n\n',
            "updated",
        ),
        (
            'data: {"phase": "error", "message": "Cannot find remote ref main", "output": "x"}\n\n',
            "the pull failed: Cannot find remote ref main",
        ),
        (
            'data: {"output": "Fetching", "phase": "syncing"}\n\n',
            "the pull did not finish; try again",
        ),
        ("", "the pull did not finish; try again"),
    ],
)
def test_the_outcome_of_a_pull_is_read_from_nbgitpullers_event_stream(stream, outcome):
    assert pull_outcome(stream) == outcome


def test_join_routes_exist_only_with_workshops_enabled(tmp_path):
    assert join_hub_settings(Site(hub={"state_dir": str(tmp_path)})) == {}

    settings = join_hub_settings(
        Site(
            hub={"state_dir": str(tmp_path)},
            workshops={"enabled": True, "join_attempts_per_minute": 7, "materials_folder": "m"},
        )
    )["JupyterHub"]

    routes = [(path, handler) for path, handler, _ in settings["extra_handlers"]]
    assert routes == [("/join", JoinCodeFormHandler), ("/join/([^/]+)", JoinEventHandler)]
    options = settings["extra_handlers"][0][2]
    assert options["state_dir"] == str(tmp_path)
    assert options["folder"] == "m"
    assert options["limiter"].per_minute == 7
    assert options is settings["extra_handlers"][1][2]  # one limiter for both pages
    assert settings["template_vars"] == {"kh_workshop_join": True}


def test_temporary_seats_are_numbered_among_themselves_so_the_first_get_the_warm_ones(tmp_path):
    path = workshop_store.database(tmp_path)
    workshop_store.create_event(path, event(seats=3))

    ada = workshop_store.take_seat(path, "abc234", "Ada", START, username="ada")
    first = workshop_store.take_seat(path, "abc234", "Bo", START)
    second = workshop_store.take_seat(path, "abc234", "Cy", START)

    assert (ada.username, ada.temporary) == ("ada", False)
    assert [first.username, second.username] == ["ws-abc234-001", "ws-abc234-002"]
    assert workshop_store.temporary_seats_taken(path, "abc234") == 2
    with pytest.raises(workshop_store.SeatsTaken):
        workshop_store.take_seat(path, "abc234", "Di", START)


def test_temporary_users_never_join_as_themselves():
    """A participant or a gallery reviewer's seat joins as a new participant, so a seat
    never enters an event's group."""
    assert is_lab_account("ada")
    assert not is_lab_account("ws-abc234-001")
    assert not is_lab_account("rv-0a1b2c3d4e")
