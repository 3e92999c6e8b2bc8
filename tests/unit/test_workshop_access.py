"""Who may teach and act on which event, and the RBAC role a teacher gets per event."""

from __future__ import annotations

from kioskhub.hub.schema.site import Site
from kioskhub.hub.workshop_access import may_manage, may_teach, participant_of
from kioskhub.hub.workshop_pages import teacher_flag, workshop_hub_settings
from kioskhub.hub.workshop_roles import teacher_load_roles, teacher_role
from kioskhub.hub.workshop_store import Event, Participant, create_event, update_event

SITE = Site(workshops={"enabled": True, "teacher_groups": ["teachers"]})


def an_event(event_id: str = "abc234", teacher: str = "tess") -> Event:
    return Event(
        event_id=event_id, title="T", teacher=teacher, environment="default", profile="small",
        materials_repo="https://github.com/lab/c.git", materials_ref="main", seats=3,
        start=0.0, end=3600.0, grace_seconds=0.0, code=f"CODE{event_id.upper()}", created=0.0,
    )  # fmt: skip


def test_teachers_are_admins_and_members_of_the_teacher_groups():
    assert may_teach(SITE, ["teachers"], is_admin=False)
    assert may_teach(SITE, [], is_admin=True)
    assert not may_teach(SITE, ["physics"], is_admin=False)
    assert not may_teach(Site(), ["teachers"], is_admin=True), "workshops are off"


def test_a_teacher_manages_only_their_own_events_and_their_participants():
    event = an_event()
    assert may_manage(event, "tess", is_admin=False)
    assert not may_manage(event, "tom", is_admin=False)
    assert may_manage(event, "admin", is_admin=True)
    seated = [Participant("abc234", "ws-abc234-001", "Ada", 0.0, True)]
    assert participant_of(seated, "ws-abc234-001") == seated[0]
    assert participant_of(seated, "bob") is None


def test_the_teacher_role_reaches_only_the_event_group():
    assert teacher_role(an_event()) == {
        "name": "workshop-abc234-teacher",
        "description": "Teacher of workshop abc234: its participants' servers",
        "scopes": [
            "servers!group=workshop-abc234",
            "read:users!group=workshop-abc234",
            "access:servers!group=workshop-abc234",
        ],
        "users": ["tess"],
    }


def test_roles_of_events_not_yet_expired_are_loaded_at_start(tmp_path):
    assert teacher_load_roles(tmp_path) == [], "no store yet: nothing is read or made"
    assert not (tmp_path / "workshops.sqlite").exists()
    create_event(tmp_path / "workshops.sqlite", an_event("aaa222"))
    create_event(tmp_path / "workshops.sqlite", an_event("bbb333", teacher="tom"))
    update_event(tmp_path / "workshops.sqlite", "bbb333", expired=7200.0)
    assert [role["name"] for role in teacher_load_roles(tmp_path)] == ["workshop-aaa222-teacher"]


def test_the_hub_settings_only_when_workshops_are_on(tmp_path):
    assert workshop_hub_settings(Site()) == {}
    site = Site(
        hub={"state_dir": tmp_path}, workshops={"enabled": True, "teacher_groups": ["teachers"]}
    )
    settings = workshop_hub_settings(site)["JupyterHub"]
    assert [route[0] for route in settings["extra_handlers"]] == [
        "/workshops",
        "/workshops/([a-z0-9]{1,32})",
        "/api/workshops",
        "/api/workshops/([a-z0-9]{1,32})",
        "/api/workshops/([a-z0-9]{1,32})/code",
        "/api/workshops/([a-z0-9]{1,32})/servers",
    ]
    flag = settings["template_vars"]["kh_workshop_teacher"]

    class Group:
        def __init__(self, name):
            self.name = name

    class User:
        kind = "user"

        def __init__(self, groups, admin=False):
            self.groups, self.admin = [Group(g) for g in groups], admin

    assert flag(User(["teachers"])) and flag(User([], admin=True))
    assert not flag(User(["physics"])) and not flag(None)
    assert teacher_flag(SITE)(User(["teachers"]))
