"""Workshop expiry on a real hub: the ``workshop-schedule`` service removes an ended event's
temporary participant (hub user, kh- account, home) and nothing of anyone else.

The event is put in the store as the join handler would (``take_seat``); the temporary
participant is made through the admin API and its server started. Its home holds links
to another user's home and to a root-owned folder (a stand-in for ``/etc``): the removal
must not follow them.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shutil
import time

import pytest
import requests

from kioskhub.hub import workshop_store as store
from kioskhub.hub.workshop_home_removal import HomeNotRemoved, remove_home
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import wait_until
from tests.support.hub_process import remove_site_folder, start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

EVERY = 5
ADMIN_PASSWORD = "an-admin-password-of-32-characters!"


@pytest.fixture(scope="module")
def site():
    folder = open_folder("workshop-expiry")
    (folder / "data").mkdir()
    config = write_site_config(
        folder,
        auth={"shared_password": SHARED_PASSWORD, "admin_password": ADMIN_PASSWORD},
        workshops={"enabled": True, "schedule_every": EVERY, "prewarm_seats": 0},
    )
    hub = start_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder}
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def join(hub_url: str, code: str, display_name: str) -> requests.Response:
    """Join the event with ``code`` through its link, as a participant's browser does."""
    session = requests.Session()
    url = f"{hub_url}/hub/join/{code}"
    session.get(url, timeout=30)
    return session.post(
        url,
        data={"display_name": display_name, "_xsrf": session.cookies.get("_xsrf") or ""},
        allow_redirects=False,
        timeout=120,
    )


def started(hub_url: str, username: str, token: str) -> UserSession:
    session = UserSession(hub_url, username)
    session.token = token
    events = session.wait_ready()
    assert events and events[-1].get("ready"), events
    return session


def test_an_ended_event_loses_its_temporary_participant_and_nothing_else(site):
    hub, folder = site["hub"], site["folder"]
    admin = signed_in(hub.url, "admin", ADMIN_PASSWORD)
    token = admin.request_token()
    path = store.database(folder / "state")
    now = time.time()
    # Open now and ending in two hours: the schedule leaves it alone while we set up.
    event = store.Event(
        "exp234",
        "Beamlines 101",
        "admin",
        "default",
        "small",
        "",
        "main",
        5,
        now - 60,
        now + 7200,
        0.0,
        store.new_code(),
        now,
    )
    store.create_event(path, event)
    # The participant joins through the link: a temporary account with a running server.
    joined = join(hub.url, event.code, "Ada <b>")
    assert joined.status_code == 302, joined.text[-2000:]
    seat = store.participants(path, "exp234")[0]
    assert seat.username == "ws-exp234-001" and seat.temporary
    store.take_seat(path, "exp234", "Marie", now, username="marie")

    # The lab account and a normal user sign in and start servers: their homes exist.
    marie = signed_in(hub.url, "marie", SHARED_PASSWORD)
    marie.request_token()
    assert marie.spawn()[-1].get("ready")
    norm = signed_in(hub.url, "norm", SHARED_PASSWORD)
    norm.request_token()
    assert norm.spawn()[-1].get("ready")
    assert (
        hub.api(
            "/groups/workshop-exp234/users", token, "POST", json={"users": ["marie"]}
        ).status_code
        == 200
    )
    started(hub.url, seat.username, token)

    homes = folder / "homes"
    temp_home, marie_home, norm_home = (homes / n for n in (seat.username, "marie", "norm"))
    kh = account(f"kh-{seat.username}")
    assert kh is not None and temp_home.is_dir()
    (norm_home / "thesis.tex").write_text("years of work")
    norm_owner = os.stat(norm_home)
    (marie_home / "notes.txt").write_text("mine")
    # The participant's own files, and the attack: links out of the home.
    (temp_home / "work").mkdir()
    (temp_home / "work" / "answer.py").write_text("print(42)")
    os.chmod(temp_home / "work", 0o500)
    os.symlink(norm_home, temp_home / "norm-home")
    # A root-owned stand-in for /etc: were the protection ever broken, a test that
    # linked the real /etc would wipe the machine it runs on.
    system = folder / "system-etc"
    system.mkdir(mode=0o755)
    (system / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.symlink(system, temp_home / "etc")
    os.symlink(norm_home / "thesis.tex", temp_home / "thesis-link")
    for path_ in (temp_home / "work", temp_home / "work" / "answer.py"):
        os.chown(path_, kh.pw_uid, kh.pw_gid)
    for link in ("norm-home", "etc", "thesis-link"):
        os.chown(temp_home / link, kh.pw_uid, kh.pw_gid, follow_symlinks=False)
    # Files left in /tmp would go to the next account given the same uid.
    left_in_tmp = folder.parent / f"{folder.name}-{seat.username}-tmp"
    left_in_tmp.write_text("scratch")
    os.chown(left_in_tmp, kh.pw_uid, kh.pw_gid)
    others_tmp = folder.parent / f"{folder.name}-norm-tmp"
    others_tmp.write_text("norm's scratch")

    store.update_event(path, "exp234", start=now - 7200, end=now - 60)
    wait_until(
        lambda: store.get_event(path, "exp234").expired is not None,
        EVERY * 6 + 60,
        f"the event did not expire:\n{hub.log_text()[-3000:]}",
    )

    assert store.event_by_code(path, event.code) is None
    assert hub.api(f"/users/{seat.username}", token).status_code == 404
    assert account(f"kh-{seat.username}") is None
    with pytest.raises(KeyError):
        grp.getgrnam(f"kh-{seat.username}")
    assert not os.path.lexists(temp_home)
    # The lab account keeps its account, home and server, and only leaves the group.
    marie_user = hub.api("/users/marie", token).json()
    assert "workshop-exp234" not in marie_user["groups"]
    assert (marie_home / "notes.txt").read_text() == "mine"
    assert marie_user["servers"]
    # The normal user, and /etc, are untouched.
    assert (norm_home / "thesis.tex").read_text() == "years of work"
    assert os.stat(norm_home).st_uid == norm_owner.st_uid
    assert os.stat(norm_home).st_mode == norm_owner.st_mode
    assert (system / "passwd").read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert os.stat(system / "passwd").st_uid == 0
    assert not left_in_tmp.exists()
    assert others_tmp.read_text() == "norm's scratch"
    others_tmp.unlink()
    log = hub.log_text()
    assert "Workshop exp234: expired" in log
    assert "removed the system account kh-ws-exp234-001" in log
    assert "removed the home folder" in log


def test_a_home_of_another_account_is_not_removed(site):
    """A seat's home that belongs to someone else (renamed in, say) is left and reported."""
    homes = site["folder"] / "homes"
    homes.mkdir(exist_ok=True)
    foreign = homes / "ws-zzz222-001"
    foreign.mkdir()
    (foreign / "keep").write_text("x")
    nobody = pwd.getpwnam("nobody")
    with pytest.raises(HomeNotRemoved, match="belongs to uid 0, not to the participant's"):
        asyncio.run(remove_home(foreign, nobody.pw_uid, nobody.pw_gid))
    assert (foreign / "keep").read_text() == "x"
    shutil.rmtree(foreign)
