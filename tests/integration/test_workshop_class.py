"""A teacher's class actions on a real hub: broadcast a message that a participant's real
server passes to JupyterLab, and collect the participants' work into an archive.

The event and its seats go straight into the workshop store; ``pam`` (a participant) and
``tess`` (its teacher) and ``tom`` (another teacher) are ordinary users who sign in with the
shared password. ``quinn`` holds a seat but never starts a server.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from kioskhub.hub import audit_log, workshop_store
from kioskhub.hub.sample_data import write_sample_data
from kioskhub.hub.workshop_store import Event
from tests.browser.test_lab_in_browser import sign_in as sign_in_with_chromium
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.browser import Browser
from tests.support.hub_process import remove_site_folder, start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

EVENT_ID = "cls234"
MESSAGE = 'Break until 11:00 <img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def classroom():
    folder = open_folder("workshop-class")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        groups={"teachers": ["tess", "tom"]},
        workshops={"enabled": True, "teacher_groups": ["teachers"], "prewarm_seats": 0},
    )
    hub = start_hub(config, folder / "hub.log")
    store = workshop_store.database(folder / "state")
    now = time.time()
    workshop_store.create_event(
        store,
        Event(EVENT_ID, "Python 101", "tess", "default", "default", "", "", 10,
              now - 60, now + 3600, 600, "CLASSCODE23", now),
    )  # fmt: skip
    workshop_store.take_seat(store, EVENT_ID, "Pam <b>", now, username="pam")
    workshop_store.take_seat(store, EVENT_ID, "Quinn", now, username="quinn")
    users = {name: signed_in(hub.url, name, SHARED_PASSWORD) for name in ("tess", "tom", "pam")}
    events = users["pam"].spawn()
    assert events[-1].get("ready"), events
    try:
        yield {"hub": hub, "folder": folder, **users}
    finally:
        hub.stop()
        remove_site_folder(folder)


def post_message(user: UserSession, text: str):
    return user.api(f"/workshops/{EVENT_ID}/messages", "POST", json={"text": text})


def test_the_teacher_broadcasts_and_the_participants_server_passes_it_on(classroom):
    tess, pam = classroom["tess"], classroom["pam"]
    before = pam.server("/kioskhub/workshop-messages?since=0")
    assert before.status_code == 200, before.text
    assert before.json()["messages"] == []

    sent = post_message(tess, f"  {MESSAGE}  ")
    assert sent.status_code == 201, sent.text
    assert sent.json()["text"] == MESSAGE and sent.json()["sender"] == "tess"

    reply = pam.server("/kioskhub/workshop-messages?since=0")
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["enabled"] is True
    assert [(m["sender"], m["event_title"], m["text"]) for m in answer["messages"]] == [
        ("tess", "Python 101", MESSAGE)
    ]
    later = pam.server(f"/kioskhub/workshop-messages?since={answer['messages'][0]['sent']}")
    assert later.json()["messages"] == []
    listed = tess.api(f"/workshops/{EVENT_ID}/messages")
    assert [m["text"] for m in listed.json()["messages"]] == [MESSAGE]


def test_only_the_events_teacher_may_broadcast(classroom):
    tess, tom, pam = classroom["tess"], classroom["tom"], classroom["pam"]
    for user in (tom, pam):
        refused = post_message(user, "fake announcement")
        assert refused.status_code == 403, refused.text
        assert "Only the event's teacher or an admin" in refused.json()["message"]
    like_a_server = UserSession(tess.hub_url, "tess")
    like_a_server.http, like_a_server.token = tess.http, None
    like_a_server.request_token(["users:activity!user", "access:servers!server"])
    refused = post_message(like_a_server, "from a notebook")
    assert refused.status_code == 403
    assert "a server's own token cannot" in refused.json()["message"]
    too_long = post_message(tess, "x" * 1001)
    assert too_long.status_code == 400
    assert "at most 1000" in too_long.json()["message"]
    texts = [m["text"] for m in tess.api(f"/workshops/{EVENT_ID}/messages").json()["messages"]]
    assert "fake announcement" not in texts and "from a notebook" not in texts


def test_the_teacher_collects_work_without_what_links_point_to(classroom):
    tess, pam, folder = classroom["tess"], classroom["pam"], classroom["folder"]
    assert pam.server("/api/contents/materials", "PUT", json={"type": "directory"}).ok
    saved = pam.server(
        "/api/contents/materials/answer.txt",
        "PUT",
        json={"type": "file", "format": "text", "content": "pam's answer: 42\n"},
    )
    assert saved.status_code in (200, 201), saved.text
    state_file = folder / "state" / "workshops.sqlite"
    made = pam.execute(
        "import os\n"
        "os.symlink('/etc/shadow', os.path.expanduser('~/materials/evil'))\n"
        f"os.symlink({str(state_file)!r}, os.path.expanduser('~/materials/hubstate'))\n"
        f"os.symlink({str(folder / 'homes')!r}, os.path.expanduser('~/materials/homes'))\n"
        "print('linked')"
    )
    assert made["stdout"].strip() == "linked", made

    reply = tess.api(f"/workshops/{EVENT_ID}/collections", "POST")
    assert reply.status_code == 201, reply.text
    name, manifest = reply.json()["name"], reply.json()["manifest"]
    lines = {p["username"]: p for p in manifest["participants"]}
    assert lines["pam"]["display_name"] == "Pam <b>"
    assert (lines["pam"]["files"], lines["pam"]["error"]) == (1, None)
    assert {link["name"]: link["target"] for link in lines["pam"]["links"]} == {
        "materials/evil": "/etc/shadow",
        "materials/hubstate": str(state_file),
        "materials/homes": str(folder / "homes"),
    }
    assert lines["quinn"]["error"] == "no home folder: the participant never started a server"

    listed = tess.api(f"/workshops/{EVENT_ID}/collections").json()["collections"]
    assert [c["name"] for c in listed] == [name]
    download = tess.api(f"/workshops/{EVENT_ID}/collections/{name}")
    assert download.status_code == 200, download.text
    with tarfile.open(fileobj=io.BytesIO(download.content)) as archive:
        names = sorted(archive.getnames())
        contents = {m.name: archive.extractfile(m).read() for m in archive if m.isreg()}
    assert names == ["manifest.json", "pam/materials", "pam/materials/answer.txt"]
    assert contents["pam/materials/answer.txt"] == b"pam's answer: 42\n"
    assert json.loads(contents["manifest.json"])["participants"][0]["username"] == "pam"
    everything = b"".join(contents.values())
    assert b"SQLite format 3" not in everything  # the hub's root-only store, linked
    assert b"root:" not in everything
    shadow = Path("/etc/shadow")
    if shadow.exists():  # the root-only file above proves it where a machine has no shadow
        assert shadow.read_bytes() not in everything
    audited = audit_log.entries(audit_log.audit_database(folder / "state"), user="pam")
    assert [(e.actor, e.action, e.detail) for e in audited] == [
        ("tess", "collect work", f"event {EVENT_ID}, 1 files into {name}")
    ]
    archive_file = folder / "state" / "workshops" / EVENT_ID / name
    assert archive_file.stat().st_mode & 0o777 == 0o600
    assert archive_file.parent.stat().st_mode & 0o777 == 0o700


def test_another_teacher_cannot_collect_and_names_cannot_leave_the_folder(classroom):
    tess, tom = classroom["tess"], classroom["tom"]
    for method in ("POST", "GET"):
        refused = tom.api(f"/workshops/{EVENT_ID}/collections", method)
        assert refused.status_code == 403, refused.text
    for attempt in ("..%2F..%2Fworkshops.sqlite", "..%2Fcls234%2Fx", "collected-x.tar.gz"):
        reply = tess.api(f"/workshops/{EVENT_ID}/collections/{attempt}")
        assert reply.status_code == 404, (attempt, reply.status_code)
        assert "has no collection" in reply.json()["message"]
        assert b"SQLite" not in reply.content


def test_jupyterlab_shows_a_broadcast_as_text(classroom):
    """pam's open JupyterLab shows what tess sends, as text: the markup in it stays text,
    and a long message opens whole with "Read all"."""
    tess, pam = classroom["tess"], classroom["pam"]
    chromium = Browser()
    try:
        sign_in_with_chromium(chromium, classroom["hub"].url, "pam", SHARED_PASSWORD)
        chromium.wait_for_url(lambda url: "/user/pam/lab" in url, 60, "pam's JupyterLab")
        earlier = chromium.wait_for_text(".Toastify__toast", "Break until 11:00", 60)
        assert '<img src=x onerror="alert(1)">' in earlier.text
        assert not earlier.find_elements(By.CSS_SELECTOR, "img")
        long_text = "Please save your notebooks now. " * 8
        assert post_message(tess, long_text).status_code == 201
        try:
            toast = chromium.wait_for_text(".Toastify__toast", "Please save your notebooks", 60)
        except TimeoutError:
            reply = pam.server("/kioskhub/workshop-messages?since=0")
            logs = chromium.driver.get_log("browser")
            raise AssertionError(f"{reply.status_code} {reply.text}; browser: {logs}") from None
        assert "Message from tess (Python 101)" in toast.text
        chromium.click_text(".Toastify__toast button", "Read all")
        whole = chromium.wait_for(".kh-workshop-message .kh-workshop-message-text", 10)
        assert whole.text == long_text.strip()
    finally:
        chromium.quit()
