"""Which environments a teacher may pick for a workshop event: those every participant may
launch, read from a real catalog (SQLite) the way the spawner reads it."""

from __future__ import annotations

import pytest

from kioskhub.hub.schema.builder import catalog_url
from kioskhub.hub.schema.site import Site
from kioskhub.hub.workshop_environments import ANY_PARTICIPANT, event_environments
from kioskhub.hub.workshop_events import EventRequestInvalid, event_changes, event_request
from kioskhub.hub.workshop_store import Event
from kioskhub.image_builder.builder_base import Artifact
from kioskhub.image_builder.catalog_db import open_catalog
from kioskhub.image_builder.catalog_store import finish_ready, register
from kioskhub.image_builder.spawn_catalog import CatalogEnvironments
from tests.unit.test_workshop_events import GOOD, NOW

TEACHER_GROUPS = ("teachers",)
EVENT_GROUP = ("workshop-abc234",)
SHARE = (
    "share it with everyone (visibility 'site', which a site admin sets on the Environments page)"
)


def refusal(name: str, fix: str, offered: str) -> str:
    return (
        f"{name!r} is launched only by you or your groups, not by the event's participants "
        f"(they belong to no group but the event's): {fix}, or choose one of {offered}"
    )


@pytest.fixture
def site(tmp_path) -> Site:
    """A site whose catalog holds tess's environments, shared in every way, and one build
    that has not finished."""
    site = Site.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "builder": {"enabled": True},
            "workshops": {"enabled": True, "teacher_groups": ["teachers"]},
            "environments": [
                {"name": "python", "display_name": "Python"},
                {"name": "staff", "display_name": "Staff", "groups": ["teachers"]},
            ],
            "profiles": [{"name": "small", "display_name": "Small", "cpu": 1, "memory": "2G"}],
        }
    )
    catalog = open_catalog(catalog_url(site.builder, site.hub.state_dir))
    with catalog.session() as session:
        for name, visibility, built in (
            ("course", "site", True),
            ("draft", "private", True),
            ("staff-room", "group:teachers", True),
            ("for-this-class", "group:workshop-abc234", True),
            ("still-building", "site", False),
        ):
            _, build = register(
                session, owner="tess", name=name, repo_url=f"https://example.org/{name}.git",
                ref="main", subdir="", builder="local", visibility=visibility,
            )  # fmt: skip
            if built:
                finish_ready(session, build, Artifact("c" * 40, name, venv_path=f"/e/{name}"), "")
    catalog.close()
    return site


def choices(site: Site, participant_groups: tuple[str, ...] = ()):
    reader = CatalogEnvironments(site)
    return event_environments(
        site,
        reader.read(site, ANY_PARTICIPANT, participant_groups),
        participant_groups,
        reader.read(site, "tess", TEACHER_GROUPS),
        TEACHER_GROUPS,
    )


def test_a_new_event_offers_what_everyone_may_launch_and_refuses_the_teachers_own(site):
    made = choices(site)

    assert [e.name for e in made.offered] == ["python", "tess.course"]
    assert made.extra_names(site) == ("tess.course",)
    offered = "python, tess.course"
    assert made.refused == {
        "staff": refusal(
            "staff",
            "ask the site admin to open it to everyone (remove its groups in the site config)",
            offered,
        ),
        "tess.draft": refusal("tess.draft", SHARE, offered),
        "tess.staff-room": refusal("tess.staff-room", SHARE, offered),
        "tess.for-this-class": refusal("tess.for-this-class", SHARE, offered),
    }
    assert "tess.still-building" not in made.offered and "tess.still-building" not in made.refused


def test_an_existing_event_also_offers_what_is_shared_with_its_group(site):
    made = choices(site, EVENT_GROUP)

    assert [e.name for e in made.offered] == ["python", "tess.course", "tess.for-this-class"]
    assert "tess.for-this-class" not in made.refused and "tess.draft" in made.refused


def test_without_a_catalog_the_config_alone_decides():
    site = Site(
        environments=[
            {"name": "python", "display_name": "Python"},
            {"name": "hep", "display_name": "HEP", "groups": ["hep"]},
        ]
    )
    made = event_environments(site, site.environments, (), site.environments, ("teachers",))
    assert [e.name for e in made.offered] == ["python"] and made.refused == {}


def test_the_request_accepts_an_offered_one_and_refuses_with_what_to_do(site):
    made = choices(site)
    extra, refused = made.extra_names(site), made.refused

    accepted = event_request({**GOOD, "environment": "tess.course"}, site, NOW, extra, refused)
    assert accepted.environment == "tess.course"
    with pytest.raises(EventRequestInvalid) as caught:
        event_request({**GOOD, "environment": "tess.draft"}, site, NOW, extra, refused)
    assert caught.value.problems == {"environment": refused["tess.draft"]}
    with pytest.raises(EventRequestInvalid) as caught:
        event_request({**GOOD, "environment": "bo.secret"}, site, NOW, extra, refused)
    assert caught.value.problems["environment"].startswith("'bo.secret' is not an environment")


def test_a_change_follows_the_same_rule(site):
    event = Event(
        event_id="abc234", title="Old", teacher="tess", environment="tess.course",
        profile="small", materials_repo="https://github.com/lab/course.git",
        materials_ref="main", seats=5, start=NOW, end=NOW + 3600, grace_seconds=0.0,
        code="ABCDEFGH", created=NOW,
    )  # fmt: skip
    made = choices(site, EVENT_GROUP)
    extra, refused = made.extra_names(site), made.refused

    kept = event_changes({"seats": 9}, event, site, NOW, extra, refused)
    assert (kept.environment, kept.seats) == ("tess.course", 9)
    moved = event_changes({"environment": "tess.for-this-class"}, event, site, NOW, extra, refused)
    assert moved.environment == "tess.for-this-class"
    with pytest.raises(EventRequestInvalid) as caught:
        event_changes({"environment": "tess.staff-room"}, event, site, NOW, extra, refused)
    assert caught.value.problems == {"environment": refused["tess.staff-room"]}
