"""A teacher's event request, checked field by field, with the messages a teacher reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kioskhub.hub.schema.site import Site
from kioskhub.hub.workshop_events import (
    EventRequest,
    EventRequestInvalid,
    event_changes,
    event_request,
    iso_utc,
)
from kioskhub.hub.workshop_store import Event

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()
SITE = Site(
    workshops={"enabled": True, "teacher_groups": ["teachers"], "max_seats": 40, "max_days": 2},
    environments=[
        {"name": "python", "display_name": "Python"},
        {"name": "root", "display_name": "ROOT"},
    ],
    profiles=[{"name": "small", "display_name": "Small", "cpu": 1, "memory": "2G"}],
)
GOOD = {
    "title": "Python for physicists",
    "environment": "python",
    "profile": "small",
    "materials_repo": "https://github.com/lab/course.git",
    "materials_ref": "v1.0",
    "seats": "30",
    "start": "2026-12-01T09:00",
    "end": "2026-12-01T17:00",
}


def problems(**changes) -> dict[str, str]:
    with pytest.raises(EventRequestInvalid) as caught:
        event_request({**GOOD, **changes}, SITE, NOW)
    return caught.value.problems


def test_a_good_request_from_the_form():
    assert event_request(GOOD, SITE, NOW) == EventRequest(
        title="Python for physicists",
        environment="python",
        profile="small",
        materials_repo="https://github.com/lab/course.git",
        materials_ref="v1.0",
        seats=30,
        start=datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp(),
        end=datetime(2026, 12, 1, 17, 0, tzinfo=UTC).timestamp(),
        grace_seconds=3600.0,
    )


def test_json_numbers_offsets_and_defaults():
    request = event_request(
        {
            **GOOD,
            "seats": 5,
            "start": "2026-12-01T10:00+01:00",
            "end": NOW + 7200,
            "grace_minutes": 0,
            "materials_ref": "",
            "title": "  two   spaces ",
        },
        SITE,
        NOW,
    )
    assert (request.seats, request.grace_seconds, request.materials_ref) == (5, 0.0, "main")
    assert request.start == datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()
    assert request.title == "two spaces"
    assert iso_utc(request.end) == "2026-12-01T10:00:00Z"


def test_every_field_is_named_with_what_to_do():
    assert problems(title=" ") == {
        "title": "give the event a title, such as 'Python for physicists'"
    }
    assert problems(title="x" * 201) == {"title": "the title has 201 characters; shorten it to 200"}
    assert problems(environment="matlab") == {
        "environment": "'matlab' is not an environment of this site open to every user; "
        "choose one of python, root"
    }
    assert problems(profile="") == {
        "profile": "choose a resource profile of this site open to every user: one of small"
    }
    assert problems(seats="41") == {"seats": "41 is outside 1–40; give the seats from 1 to 40"}
    assert problems(seats="0") == {"seats": "0 is outside 1–40; give the seats from 1 to 40"}
    assert problems(seats="many") == {
        "seats": "'many' is not a number; give the seats from 1 to 40"
    }
    assert problems(seats=2.5) == {"seats": "give the seats as a whole number from 1 to 40"}
    assert problems(start="tomorrow") == {
        "start": "'tomorrow' is not a time; write the start as YYYY-MM-DDTHH:MM (UTC)"
    }
    assert problems(end="2026-12-01T08:59") == {
        "end": "the end must be after the start; give a later end"
    }
    assert problems(end="2026-12-03T09:01") == {
        "end": "an event may last at most 2 days on this site; give an earlier end or split "
        "the event"
    }
    assert problems(start="2026-11-30T09:00", end="2026-12-01T07:00") == {
        "end": "the end has passed; give an end in the future"
    }
    assert problems(grace_minutes="-5") == {
        "grace_minutes": "-5 is outside 0–10080; give the grace minutes from 0 to 10080"
    }
    assert problems(colour="red") == {
        "fields": "unknown field colour; an event has: title, environment, profile, "
        "materials_repo, materials_ref, seats, start, end, grace_minutes"
    }


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("", "give the git repository of the materials, such as https://github.com/group/course.git"),
        ("--upload-pack=touch /tmp/x", "'--upload-pack=touch /tmp/x' looks like a command-line "
         "option, not a repository URL"),
        ("https://github.com/a b", "the repository URL contains spaces or control characters"),
        ("http://github.com/lab/course.git", "the scheme 'http' is not allowed; this site "
         "allows: https, git"),
        ("file:///etc/shadow", "file:// URLs are not allowed"),
        ("/srv/course", "local paths are not allowed on this site; give a git URL"),
        ("https://evil.example/x.git", "the host 'evil.example' is not allowed; this site "
         "allows: github.com, gitlab.com"),
        ("https://token:x@github.com/lab/c.git", "do not put user names, passwords or tokens "
         "in the repository URL"),
        ("ext::sh -c touch% /tmp/x", "the repository URL contains spaces or control characters"),
    ],
)  # fmt: skip
def test_hostile_or_unknown_materials_repositories_are_refused(repo, message):
    assert problems(materials_repo=repo) == {"materials_repo": message}


def test_git_urls_and_local_paths_where_the_site_allows_them():
    local = SITE.model_copy(
        update={"builder": SITE.builder.model_copy(update={"allow_local_paths": True})}
    )
    assert event_request({**GOOD, "materials_repo": "/srv/course"}, local, NOW).materials_repo == (
        "/srv/course"
    )
    git = {**GOOD, "materials_repo": "git://github.com/lab/course.git"}
    assert event_request(git, SITE, NOW).materials_repo == "git://github.com/lab/course.git"


def test_hostile_refs_are_refused():
    assert problems(materials_ref="--upload-pack=x") == {
        "materials_ref": "the ref '--upload-pack=x' may not start with '-'"
    }
    assert problems(materials_ref="a..b") == {
        "materials_ref": "the ref 'a..b' is not a valid git ref: it has '..'"
    }


def test_changes_keep_the_other_fields_and_are_checked_whole():
    event = Event(
        event_id="abc234", title="Old", teacher="tess", environment="python", profile="small",
        materials_repo="https://github.com/lab/course.git", materials_ref="main", seats=10,
        start=NOW, end=NOW + 3600, grace_seconds=600.0, code="ABCDEFGHJK", created=NOW,
    )  # fmt: skip
    changed = event_changes({"title": "New", "seats": 12}, event, SITE, NOW + 7200)
    assert (changed.title, changed.seats, changed.grace_seconds) == ("New", 12, 600.0)
    assert changed.end == event.end, "an unchanged end that passed is no problem"
    with pytest.raises(EventRequestInvalid) as caught:
        event_changes({"end": NOW + 60}, event, SITE, NOW + 120)
    assert caught.value.problems == {"end": "the end has passed; give an end in the future"}
    assert str(caught.value) == "end: the end has passed; give an end in the future"


def test_choices_kept_for_some_groups_are_not_offered():
    """Participants are only in the event's group: the spawner would refuse them."""
    site = SITE.model_copy(
        update={
            "environments": (
                *SITE.environments,
                SITE.environments[0].model_copy(update={"name": "gpu-stack", "groups": ("hep",)}),
            )
        }
    )
    with pytest.raises(EventRequestInvalid) as caught:
        event_request({**GOOD, "environment": "gpu-stack"}, site, NOW)
    assert caught.value.problems == {
        "environment": "'gpu-stack' is not an environment of this site open to every user; "
        "choose one of python, root"
    }
