"""Literal-expectation tests of the workshop schedule's plan: which events are due, what
expiring one removes, which seats are pre-warmed, which archives go, and the service's
role."""

from __future__ import annotations

import os
from pathlib import Path

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site
from kioskhub.hub.workshop_expiry import (
    DAY_S,
    EventExpiry,
    TemporaryRemoval,
    archives_past_keeping,
    collected_folder,
    due_events,
    expiry_plan,
    prune_collected,
)
from kioskhub.hub.workshop_prewarm import (
    environment_problem,
    events_to_prewarm,
    seats_to_prewarm,
    servers_to_prewarm,
)
from kioskhub.hub.workshop_schedule import schedule_hub_settings
from kioskhub.hub.workshop_store import Event, Participant

HOUR = 3600.0


def workshop_site(folder: Path, **workshops) -> Site:
    return Site.model_validate(
        {
            "hub": {"url": "http://127.0.0.1:9000", "state_dir": "state"},
            "home": {"root": "/srv/homes"},
            "workshops": {"enabled": True, "prewarm_seats": 2, **workshops},
        },
        context={"base_dir": folder},
    )


def event(event_id: str, start: float, end: float, grace: float = HOUR, **extra) -> Event:
    values = dict(
        event_id=event_id,
        title="Python for beamlines",
        teacher="tess",
        environment="default",
        profile="small",
        materials_repo="https://example.org/materials.git",
        materials_ref="main",
        seats=3,
        start=start,
        end=end,
        grace_seconds=grace,
        code="ABCDEFGHJK",
        created=0.0,
    )
    return Event(**{**values, **extra})


def test_an_event_is_due_once_past_its_end_plus_grace_and_only_once():
    events = [
        event("ended", 0, 10 * HOUR),  # closes at 11 h
        event("ingrace", 0, 10.5 * HOUR),  # closes at 11.5 h
        event("nograce", 0, 11 * HOUR, grace=0),  # closes at 11 h exactly
        event("done", 0, 2 * HOUR, expired=3 * HOUR),
        event("future", 20 * HOUR, 22 * HOUR),
    ]
    assert [e.event_id for e in due_events(events, now=11 * HOUR)] == ["ended", "nograce"]


def test_expiry_removes_temporary_seats_and_only_ungroups_lab_accounts(tmp_path):
    site = workshop_site(tmp_path)
    ended = event("abc234", 0, HOUR, seats=5)
    participants = [
        Participant("abc234", "ws-abc234-001", "Ada", 10.0, temporary=True),
        Participant("abc234", "marie", "Marie C.", 11.0, temporary=False),
        Participant("abc234", "ws-abc234-003", "Bob", 12.0, temporary=True),
        # Not this event's seats, whatever the store says: never removed as temporaries.
        Participant("abc234", "ws-other9-004", "X", 13.0, temporary=True),
        Participant("abc234", "root", "<b>root</b>", 14.0, temporary=True),
        Participant("other9", "ws-other9-001", "Y", 15.0, temporary=True),
    ]
    assert expiry_plan(site, ended, participants) == EventExpiry(
        event_id="abc234",
        group="workshop-abc234",
        temporary=(
            TemporaryRemoval("ws-abc234-001", "kh-ws-abc234-001", Path("/srv/homes/ws-abc234-001")),
            TemporaryRemoval("ws-abc234-003", "kh-ws-abc234-003", Path("/srv/homes/ws-abc234-003")),
            # Pre-warmed (prewarm_seats: 2) but never taken.
            TemporaryRemoval("ws-abc234-002", "kh-ws-abc234-002", Path("/srv/homes/ws-abc234-002")),
        ),
        lab_accounts=("marie", "ws-other9-004", "root"),
    )


def test_archives_older_than_the_keeping_days_go():
    now = 100 * DAY_S
    entries = [
        ("collected-20261101T090000Z.tar.gz", now - 31 * DAY_S),
        ("collected-20261120T090000Z.tar.gz", now - 29 * DAY_S),
        ("collected-20251001T090000Z-2.tar.gz", now - 400 * DAY_S),
        ("notes.txt", now - 400 * DAY_S),
    ]
    assert archives_past_keeping(entries, now, keep_days=30) == [
        "collected-20251001T090000Z-2.tar.gz",
        "collected-20261101T090000Z.tar.gz",
    ]


def test_prewarming_covers_the_lead_before_the_start_until_the_end(tmp_path):
    site = workshop_site(tmp_path, prewarm_minutes=10)
    events = [
        event("soon22", 10 * HOUR + 300, 12 * HOUR),  # starts in 5 min
        event("later2", 10 * HOUR + 1200, 12 * HOUR),  # starts in 20 min
        event("now222", 9 * HOUR, 11 * HOUR),  # running
        event("over22", 8 * HOUR, 9 * HOUR),
    ]
    names = [e.event_id for e in events_to_prewarm(site, events, now=10 * HOUR)]
    assert names == ["soon22", "now222"]
    assert events_to_prewarm(workshop_site(tmp_path, prewarm_minutes=0), events, 10 * HOUR) == []


def test_prewarmed_seats_are_the_first_ones_and_only_for_local_servers(tmp_path):
    site = workshop_site(tmp_path, prewarm_seats=30)
    assert seats_to_prewarm(site, event("abc234", 0, HOUR, seats=3)) == [
        "ws-abc234-001",
        "ws-abc234-002",
        "ws-abc234-003",
    ]
    podman = site.model_copy(
        update={"spawner": site.spawner.model_copy(update={"backend": "podman"})}
    )
    assert seats_to_prewarm(podman, event("abc234", 0, HOUR)) == []


def test_prewarmed_servers_are_the_untaken_seats_on_any_backend(tmp_path):
    site = workshop_site(tmp_path, prewarm_seats=3)
    podman = site.model_copy(
        update={"spawner": site.spawner.model_copy(update={"backend": "podman"})}
    )
    seats = ["ws-abc234-001", "ws-abc234-002", "ws-abc234-003"]

    assert servers_to_prewarm(site, event("abc234", 0, HOUR, seats=30), 0) == seats
    assert servers_to_prewarm(podman, event("abc234", 0, HOUR, seats=30), 1) == seats[1:]
    assert servers_to_prewarm(site, event("abc234", 0, HOUR, seats=2), 0) == seats[:2]
    assert servers_to_prewarm(site, event("abc234", 0, HOUR, seats=30), 5) == []
    off = workshop_site(tmp_path, prewarm_seats=3, prewarm_servers=False)
    assert servers_to_prewarm(off, event("abc234", 0, HOUR, seats=30), 0) == []


def test_an_environment_without_a_finished_build_is_reported():
    launchable = (
        Environment(name="site-python", kind="venv"),
        Environment(name="beamline-tools", kind="repository", repository="/srv/beamline.git"),
    )

    def problem(name: str) -> str | None:
        return environment_problem(event("e", 0, 1, environment=name), launchable)

    assert problem("site-python") is None
    assert problem("beamline-tools") == (
        "the environment 'beamline-tools' has no finished build yet"
    )
    assert problem("nope") == (
        "the environment 'nope' is not one that its participants may launch "
        "(not built yet, removed, or no longer shared with everyone)"
    )


def test_collected_archives_past_keeping_are_deleted_and_links_not_followed(tmp_path):
    site = workshop_site(tmp_path, keep_collected_days=30)
    folder = collected_folder(site)
    (folder / "abc234").mkdir(parents=True)
    os.chmod(folder, 0o700)
    now = 1000 * DAY_S
    outside = tmp_path / "outside.txt"
    outside.write_text("not an archive")
    files = {
        "collected-20260101T000000Z.tar.gz": now - 40 * DAY_S,
        "collected-20260201T000000Z.tar.gz": now - 2 * DAY_S,
        "abc234/collected-20260102T000000Z.tar.gz": now - 31 * DAY_S,
        "abc234/collected-20260103T000000Z.tar.gz": now - 29 * DAY_S,
        "abc234/notes.txt": now - 99 * DAY_S,
    }
    for name, modified in files.items():
        (folder / name).write_text(name)
        os.utime(folder / name, (modified, modified))
    link = folder / "collected-20250101T000000Z.tar.gz"
    link.symlink_to(outside)
    os.utime(link, (now - 99 * DAY_S,) * 2, follow_symlinks=False)
    assert prune_collected(site, now) == [
        f"{folder}/abc234/collected-20260102T000000Z.tar.gz",
        f"{folder}/collected-20260101T000000Z.tar.gz",
    ]
    assert sorted(p.name for p in folder.rglob("*")) == [
        "abc234",
        "collected-20250101T000000Z.tar.gz",
        "collected-20260103T000000Z.tar.gz",
        "collected-20260201T000000Z.tar.gz",
        "notes.txt",
    ]
    assert outside.read_text() == "not an archive"


def test_the_schedule_runs_as_a_service_with_its_own_minimal_role(tmp_path):
    settings = schedule_hub_settings(workshop_site(tmp_path), python="/venv/bin/python")
    service = settings["JupyterHub"]["services"][0]
    assert service["name"] == "workshop-schedule"
    assert service["command"] == ["/venv/bin/python", "-m", "kioskhub.hub.workshop_schedule"]
    assert "shared_password" not in service["environment"]["KIOSKHUB_SITE_JSON"]
    assert settings["JupyterHub"]["load_roles"] == [
        {
            "name": "kioskhub-workshop-schedule",
            "description": "Pre-warms and ends workshop events: starts untaken "
            "seats' servers, stops participants' servers, deletes temporary "
            "participants, empties the event's group",
            "services": ["workshop-schedule"],
            "scopes": [
                "read:servers",
                "delete:servers",
                "delete:users",
                "groups",
                "custom:workshops:prewarm",
            ],
        }
    ]
    assert list(settings["JupyterHub"]["custom_scopes"]) == ["custom:workshops:prewarm"]
    (route,) = settings["JupyterHub"]["extra_handlers"]
    assert route[0] == "/api/workshops/([a-z0-9]{1,32})/prewarm"
    site_off = workshop_site(tmp_path).model_copy(
        update={
            "workshops": workshop_site(tmp_path).workshops.model_copy(update={"enabled": False})
        }
    )
    assert schedule_hub_settings(site_off, python="/venv/bin/python") == {}
