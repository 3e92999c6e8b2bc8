"""Teachers on a real hub: create events through the API and the page, share the join
link, rotate and revoke the code, start and stop the class's servers; non-teachers,
teachers of other events and names outside the event are refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from kioskhub.hub import workshop_store
from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import wait_until
from tests.support.hub_process import remove_site_folder, start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
HOSTILE = '<script>alert("class")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;class&#34;)&lt;/script&gt;"


def in_hours(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")


def event_fields(title: str = "Python for physicists") -> dict:
    return {
        "title": title,
        "environment": "default",
        "profile": "small",
        "materials_repo": "https://github.com/lab/course.git",
        "materials_ref": "main",
        "seats": 5,
        "start": in_hours(-1),
        "end": in_hours(3),
    }


@pytest.fixture(scope="module")
def school():
    folder = open_folder("workshop-teacher")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        auth={"admin_password": ADMIN_PASSWORD},
        groups={"teachers": ["tess", "tom"]},
        workshops={"enabled": True, "teacher_groups": ["teachers"], "prewarm_seats": 0},
    )
    hub = start_hub(config, folder / "hub.log")
    school = {"hub": hub, "config": config, "folder": folder}
    try:
        school.update(
            store=folder / "state" / "workshops.sqlite",
            admin=signed_in(hub.url, "admin", ADMIN_PASSWORD),
            tess=signed_in(hub.url, "tess", SHARED_PASSWORD),
            tom=signed_in(hub.url, "tom", SHARED_PASSWORD),
        )
        yield school
    finally:
        school["hub"].stop()  # the hub that runs now: ``restarted`` replaces it
        remove_site_folder(folder)


def restarted(school) -> None:
    """Stop the hub and start it again on the same state (JupyterHub drops the roles that
    its ``load_roles`` does not name at each start)."""
    school["hub"].stop()
    school["hub"] = start_hub(school["config"], school["folder"] / "hub-again.log")


def created(teacher: UserSession, **changes) -> dict:
    reply = teacher.api("/workshops", "POST", json={**event_fields(), **changes})
    assert reply.status_code == 201, reply.text
    return reply.json()


def page_form(session: UserSession, path: str, fields: dict) -> requests.Response:
    return session.http.post(
        f"{session.hub_url}/hub/{path}",
        data={**fields, "_xsrf": session.http.cookies.get("_xsrf")},
        timeout=120,
        allow_redirects=False,
    )


def test_a_teacher_creates_events_through_the_api_and_the_page(school):
    hub, tess = school["hub"], school["tess"]
    event = created(tess)
    assert event["join_url"] == f"{hub.url}/hub/join/{event['code']}"
    assert event["teacher"] == "tess" and event["group"] == f"workshop-{event['event_id']}"
    assert event["grace_minutes"] == 60, "the site's default grace"
    listed = tess.api("/workshops").json()["events"]
    assert event["event_id"] in [e["event_id"] for e in listed]

    page = tess.http.get(f"{hub.url}/hub/workshops", timeout=30)
    assert page.status_code == 200 and 'id="kh-nav-workshops"' in page.text
    assert event["join_url"] in page.text

    made = page_form(tess, "workshops", {**event_fields("From the form"), "seats": "3"})
    assert made.status_code == 303, made.text
    class_view = tess.http.get(f"{hub.url}{made.headers['Location']}", timeout=30)
    assert class_view.status_code == 200 and "From the form" in class_view.text
    code = class_view.text.split('id="kh-workshop-code">')[1].split("<")[0]
    assert workshop_store.event_by_code(school["store"], code).title == "From the form"
    assert f"{hub.url}/hub/join/{code}" in class_view.text

    refused = page_form(tess, "workshops", {**event_fields(), "seats": "9999", "end": "soon"})
    assert refused.status_code == 400
    shown = refused.content.decode()
    assert "9999 is outside 1–300; give the seats from 1 to 300" in shown
    assert "&#39;soon&#39; is not a time; write the end as YYYY-MM-DDTHH:MM (UTC)" in shown
    bad = tess.api("/workshops", "POST", json={**event_fields(), "materials_repo": "--x"})
    assert bad.status_code == 400
    assert bad.json()["problems"] == {
        "materials_repo": "'--x' looks like a command-line option, not a repository URL"
    }

    roles = school["admin"].api("/users/tess").json()["roles"]
    assert f"workshop-{event['event_id']}-teacher" in roles


def test_someone_who_is_not_a_teacher_gets_403(school):
    hub = school["hub"]
    ada = signed_in(hub.url, "ada", SHARED_PASSWORD)
    page = ada.http.get(f"{hub.url}/hub/workshops", timeout=30)
    assert page.status_code == 403
    assert "Workshops are for teachers: ask the site admin to add you to one of the groups " \
        "teachers" in page.text  # fmt: skip
    assert 'id="kh-nav-workshops"' not in ada.http.get(f"{hub.url}/hub/home", timeout=30).text
    refused = ada.api("/workshops", "POST", json=event_fields())
    assert refused.status_code == 403 and "Workshops are for teachers" in refused.json()["message"]
    assert requests.get(f"{hub.url}/hub/api/workshops", timeout=30).status_code == 403

    reader = signed_in(hub.url, "tess", SHARED_PASSWORD)
    reader.request_token(["read:users!user=tess"])
    narrow = reader.api("/workshops", "POST", json=event_fields())
    assert (narrow.status_code, narrow.json()["message"]) == (
        403,
        "this token lacks the servers scope that running workshop events needs",
    )


def test_a_teacher_of_another_event_is_refused_on_this_one(school):
    tess, tom = school["tess"], school["tom"]
    event = created(tess)
    mine = created(tom)
    event_id = event["event_id"]
    message = f"the event {event_id} is another teacher's; you act only on your own events"
    for path, method in [
        (f"/workshops/{event_id}", "GET"),
        (f"/workshops/{event_id}", "PATCH"),
        (f"/workshops/{event_id}", "DELETE"),
        (f"/workshops/{event_id}/code", "POST"),
        (f"/workshops/{event_id}/code", "DELETE"),
        (f"/workshops/{event_id}/servers", "POST"),
        (f"/workshops/{event_id}/servers", "DELETE"),
    ]:
        reply = tom.api(path, method, json={})
        assert (reply.status_code, reply.json()["message"]) == (403, message), (path, method)
    page = tom.http.get(f"{tom.hub_url}/hub/workshops/{event_id}", timeout=30)
    assert page.status_code == 403 and event["code"] not in page.text
    assert event_id not in [e["event_id"] for e in tom.api("/workshops").json()["events"]]
    assert workshop_store.event_by_code(school["store"], event["code"]).teacher == "tess"
    assert tom.api(f"/workshops/{mine['event_id']}").status_code == 200
    assert school["admin"].api(f"/workshops/{event_id}").status_code == 200, "admins may"


def test_rotate_makes_the_old_code_unknown_revoke_empties_it_and_end_closes(school):
    tess, store = school["tess"], school["store"]
    event = created(tess)
    rotated = tess.api(f"/workshops/{event['event_id']}/code", "POST")
    assert rotated.status_code == 200
    new = rotated.json()["code"]
    assert new != event["code"] and rotated.json()["join_url"].endswith(f"/hub/join/{new}")
    assert workshop_store.event_by_code(store, event["code"]) is None
    assert workshop_store.event_by_code(store, new).event_id == event["event_id"]

    view = page_form(tess, f"workshops/{event['event_id']}", {"action": "rotate"})
    assert view.status_code == 200 and "the old one no longer works" in view.text
    assert workshop_store.event_by_code(store, new) is None

    assert tess.api(f"/workshops/{event['event_id']}/code", "DELETE").json()["code"] == ""
    assert workshop_store.get_event(store, event["event_id"]).code == ""
    view = tess.http.get(f"{tess.hub_url}/hub/workshops/{event['event_id']}", timeout=30)
    assert 'id="kh-workshop-no-code"' in view.text

    patched = tess.api(f"/workshops/{event['event_id']}", "PATCH", json={"seats": 7})
    assert patched.status_code == 200 and patched.json()["seats"] == 7
    ended = tess.api(f"/workshops/{event['event_id']}", "DELETE").json()
    assert workshop_store.get_event(store, event["event_id"]).end <= time.time()
    assert ended["join_url"] == ""


def test_start_all_and_stop_all_reach_the_participants_only(school):
    hub, tess, tom, admin, store = (school[k] for k in ("hub", "tess", "tom", "admin", "store"))
    event = created(tess, title=HOSTILE)
    event_id = event["event_id"]
    # Lab accounts that joined (temporary ws- names are made only by the join link).
    seated = [
        workshop_store.take_seat(store, event_id, name, time.time(), username=user).username
        for name, user in ((HOSTILE, "bo"), ("Bo ../../etc", "cy"))
    ]
    created_users = admin.api("/users", "POST", json={"usernames": [*seated, "ada"]})
    assert created_users.status_code in (201, 409), created_users.text
    admin.api(f"/groups/{event['group']}/users", "POST", json={"users": seated})

    outsider = tess.api(f"/workshops/{event_id}/servers", "POST", json={"users": ["ada"]})
    assert outsider.status_code == 403
    assert outsider.json()["message"] == (
        f"ada is not a participant of the event {event_id}; teachers act only on their own "
        "events' participants"
    )
    assert tom.api(f"/workshops/{event_id}/servers", "POST").status_code == 403
    assert not admin.api("/users/ada").json()["servers"]

    started = tess.api(f"/workshops/{event_id}/servers", "POST")
    assert started.status_code == 202, started.text
    assert set(started.json()["servers"]) == set(seated)

    def states() -> list[str]:
        return [p["server"] for p in tess.api(f"/workshops/{event_id}").json()["participants"]]

    wait_until(lambda: states() == ["running", "running"], 120, f"servers running: {states()}")
    for name in seated:
        options = admin.api(f"/users/{name}").json()["servers"][""]["user_options"]
        assert options == {"environment": "default", "profile": "small"}

    # The teacher's role reaches the participants, through JupyterHub's own API, and no one else.
    assert tess.api(f"/users/{seated[0]}").status_code == 200
    assert tess.api("/users/ada").status_code in (403, 404)

    view = tess.http.get(f"{hub.url}/hub/workshops/{event_id}", timeout=30)
    assert HOSTILE not in view.text and ESCAPED in view.text
    assert view.text.count('data-server="running"') == 2

    stopped = page_form(tess, f"workshops/{event_id}", {"action": "stop"})
    assert stopped.status_code == 200
    wait_until(lambda: states() == ["stopped", "stopped"], 60, f"servers stopped: {states()}")
    assert tom.api(f"/workshops/{event_id}/servers", "DELETE").status_code == 403


def test_the_teacher_roles_of_live_events_survive_a_restart(school):
    tess, admin = school["tess"], school["admin"]
    live = created(tess)["event_id"]
    expired = created(tess)["event_id"]
    workshop_store.update_event(school["store"], expired, expired=time.time())
    restarted(school)
    roles = admin.api("/users/tess").json()["roles"]
    assert f"workshop-{live}-teacher" in roles
    assert f"workshop-{expired}-teacher" not in roles, "an expired event's role is dropped"
    assert tess.api(f"/workshops/{live}").status_code == 200
