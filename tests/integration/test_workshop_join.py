"""Joining a workshop on a real hub: a participant opens the link, picks a display name and
gets a running server of their own, in the event's group, with the materials pulled by
nbgitpuller (as the participant). Refused attempts say why and make no account; wrong
codes are rate-limited per address (a class behind one address is not); no one signs in
as a participant with the shared password.

The materials repository is a bare git repository served by ``git daemon`` on loopback.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from kioskhub.hub import workshop_store
from kioskhub.hub.sample_data import write_sample_data
from kioskhub.hub.workshop_materials import pull_outcome
from kioskhub.hub.workshop_store import Event
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import wait_until
from tests.support.hub_process import free_port, start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
ATTEMPTS_PER_MINUTE = 20
HOSTILE_NAME = '<script>alert("x")</script> ../../etc'
NOTEBOOK = {
    "cells": [{"cell_type": "code", "metadata": {}, "source": "print('hello')", "outputs": []}],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
    "execution_count": None,
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def materials_repository(folder: Path) -> Path:
    """A bare repository ``materials.git`` with ``intro.ipynb`` on ``main``."""
    work = folder / "work"
    work.mkdir()
    (work / "intro.ipynb").write_text(json.dumps(NOTEBOOK))
    git("init", "-q", "-b", "main", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qm", "m", cwd=work)
    bare = folder / "served" / "materials.git"
    bare.parent.mkdir()
    git("clone", "-q", "--bare", str(work), str(bare), cwd=folder)
    return bare


@pytest.fixture(scope="module")
def site():
    if shutil.which("git") is None or not Path("/usr/lib/git-core/git-daemon").exists():
        pytest.fail("git and git-daemon (Debian package git) are needed to serve the materials")
    folder = open_folder("workshop-join")
    write_sample_data(folder / "data")
    materials_repository(folder)
    git_port = free_port()
    daemon = subprocess.Popen(
        [
            "git", "daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1",
            f"--port={git_port}", f"--base-path={folder / 'served'}", str(folder / "served"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    config = write_site_config(
        folder,
        auth={"admin_password": ADMIN_PASSWORD},
        workshops={
            "enabled": True,
            "join_attempts_per_minute": ATTEMPTS_PER_MINUTE,
            "prewarm_seats": 0,
        },
    )
    hub = start_hub(config, folder / "hub.log")
    admin = signed_in(hub.url, "admin", ADMIN_PASSWORD)
    settings = yaml.safe_load(config.read_text())
    yield {
        "hub": hub,
        "admin": admin,
        "folder": folder,
        "store": workshop_store.database(folder / "state"),
        "repo": f"git://127.0.0.1:{git_port}/materials.git",
        "hub_port": settings["hub"]["internal_ports"]["hub"],
    }
    hub.stop()
    daemon.terminate()
    daemon.wait(10)
    shutil.rmtree(folder, ignore_errors=True)


def new_event(site, event_id: str, **changes) -> Event:
    now = time.time()
    values = dict(
        event_id=event_id,
        title=f"Intro <b>{event_id}</b>",
        teacher="admin",
        environment="default",
        profile="small",
        materials_repo=site["repo"],
        materials_ref="main",
        seats=5,
        start=now - 60,
        end=now + 3600,
        grace_seconds=600.0,
        code=workshop_store.new_code(),
        created=now - 120,
    )
    event = Event(**(values | changes))
    workshop_store.create_event(site["store"], event)
    return event


def participants_in_hub(site) -> list[str]:
    return sorted(u["name"] for u in site["admin"].api("/users").json() if u["name"][:3] == "ws-")


def join(site, event: Event, name: str, session: requests.Session | None = None):
    session = session or requests.Session()
    url = f"{site['hub'].url}/hub/join/{event.code}"
    page = session.get(url, timeout=30)
    reply = session.post(
        url,
        data={"display_name": name, "_xsrf": session.cookies.get("_xsrf") or ""},
        allow_redirects=False,
        timeout=60,
    )
    return page, reply, session


def refusal_of(reply: requests.Response) -> tuple[str, str]:
    pattern = r'id="kh-join-refused" data-reason="([^"]+)"[^>]*>\s*(.*?)\s*</div>'
    found = re.search(pattern, reply.text, re.S)
    assert found, reply.text[-2000:]
    return found.group(1), html.unescape(found.group(2))


def test_a_participant_joins_and_finds_the_materials_in_their_server(site):
    event = new_event(site, "join01")

    page, reply, session = join(site, event, HOSTILE_NAME)

    assert page.status_code == 200
    assert "Intro &lt;b&gt;join01&lt;/b&gt;" in page.text
    assert reply.status_code == 302, reply.text[-2000:]
    name = "ws-join01-001"
    assert reply.headers["Location"].startswith(f"/hub/spawn-pending/{name}?next=")
    model = site["admin"].api(f"/users/{name}").json()
    assert f"workshop-{event.event_id}" in model["groups"]
    wait_until(
        lambda: site["admin"].api(f"/users/{name}").json()["servers"].get("", {}).get("ready"),
        120,
        f"{name}'s server did not start",
    )
    # The spawn-pending page sends the participant to nbgitpuller's page...
    pull_page = session.get(site["hub"].url + reply.headers["Location"], timeout=60)
    assert pull_page.status_code == 200, pull_page.text[-2000:]
    assert f"/user/{name}/git-pull?" in pull_page.url
    # ... whose script asks the server's event stream to pull, as this does.
    stream = session.get(
        f"{site['hub'].url}/user/{name}/git-pull/api",
        params={"repo": event.materials_repo, "branch": "main", "targetpath": "materials"},
        timeout=120,
    )
    assert '"phase": "finished"' in stream.text, stream.text[-2000:]
    home = site["folder"] / "homes" / name
    notebook = home / "materials" / "intro.ipynb"
    assert json.loads(notebook.read_text())["cells"][0]["source"] == "print('hello')"
    assert notebook.stat().st_uid == home.stat().st_uid != 0
    # A repository that fails to pull: nbgitpuller's stream says so, read as the teacher's
    # view reads it (workshop_materials.push_update).
    broken = session.get(
        f"{site['hub'].url}/user/{name}/git-pull/api",
        params={"repo": site["repo"].replace("materials", "missing"), "targetpath": "other"},
        timeout=120,
    )
    assert pull_outcome(broken.text).startswith("the pull failed: "), broken.text[-2000:]
    # The display name is shown escaped, and is in no username or path.
    again = session.get(f"{site['hub'].url}/hub/join/{event.code}", timeout=30)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; ../../etc" in again.text
    assert "<script>alert" not in again.text
    assert participants_in_hub(site) == [name]
    stored = workshop_store.participants(site["store"], event.event_id)
    assert [(p.username, p.display_name, p.temporary) for p in stored] == [
        (name, HOSTILE_NAME, True)
    ]


@pytest.mark.parametrize(
    ("changes", "reason", "message"),
    [
        (
            {"start": time.time() + 7200, "end": time.time() + 9000},
            "not-open",
            "“Intro <b>early01</b>” opens at ",
        ),
        ({"start": time.time() - 7200, "end": time.time() - 60}, "ended", "has ended"),
        ({"seats": 1}, "full", "All 1 seats of “Intro <b>full01</b>” are taken"),
        ({"code": ""}, "unknown-code", "No event has this code; check it with your teacher."),
    ],
    ids=["early01", "ended01", "full01", "revoked01"],
)
def test_a_refused_join_says_why_and_makes_no_account(site, changes, reason, message, request):
    event_id = request.node.callspec.id
    event = new_event(site, event_id, **(changes | {"code": workshop_store.new_code()}))
    if "code" in changes:
        workshop_store.update_event(site["store"], event_id, code="")
    if "seats" in changes:
        workshop_store.take_seat(site["store"], event_id, "Grace", time.time(), username="grace")
    seated = workshop_store.participants(site["store"], event_id)
    before = participants_in_hub(site)

    _, reply, _ = join(site, event, "Ada")

    assert refusal_of(reply)[0] == reason
    assert message in refusal_of(reply)[1]
    assert participants_in_hub(site) == before
    assert workshop_store.participants(site["store"], event_id) == seated


def test_a_lab_account_joins_as_itself(site):
    event = new_event(site, "lab01")
    admin = site["admin"].http
    url = f"{site['hub'].url}/hub/join/{event.code}"

    page = admin.get(url, timeout=30)
    assert 'value="Join as admin"' in page.text
    assert 'name="display_name"' not in page.text
    reply = admin.post(
        url,
        data={"as_account": "1", "_xsrf": admin.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=60,
    )

    assert reply.status_code == 302, reply.text[-2000:]
    assert reply.headers["Location"].startswith("/hub/spawn-pending/admin?next=")
    stored = workshop_store.participants(site["store"], event.event_id)
    assert [(p.username, p.display_name, p.temporary) for p in stored] == [
        ("admin", "admin", False)
    ]
    assert "workshop-lab01" in site["admin"].api("/users/admin").json()["groups"]
    assert "ws-lab01-001" not in participants_in_hub(site)


def test_a_server_that_cannot_start_says_why_on_the_join_page(site):
    event = new_event(site, "nosrv1", environment="no-such-environment")

    _, reply, _ = join(site, event, "Ada")

    reason, message = refusal_of(reply)
    assert (reply.status_code, reason) == (500, "spawn-failed")
    assert message.startswith("Your server could not start: "), message
    assert "no-such-environment" in message


def test_wrong_codes_are_limited_per_address_and_a_class_behind_one_address_is_not(site):
    event = new_event(site, "rate01")
    # Straight to the hub's port, as from the proxy of other client addresses.
    hub = f"http://127.0.0.1:{site['hub_port']}/hub/join"
    school = {"X-Forwarded-For": "198.51.100.6"}
    right = [
        requests.get(f"{hub}/{event.code}", headers=school, timeout=30)
        for _ in range(ATTEMPTS_PER_MINUTE + 5)
    ]
    assert {a.status_code for a in right} == {200}

    guesser = {"X-Forwarded-For": "198.51.100.7"}
    wrong = [
        requests.get(f"{hub}/NOSUCHCODE", headers=guesser, timeout=30)
        for _ in range(ATTEMPTS_PER_MINUTE)
    ]
    assert {a.status_code for a in wrong} == {404}

    limited = requests.get(f"{hub}/{event.code}", headers=guesser, timeout=30)

    assert limited.status_code == 429
    assert refusal_of(limited)[1].startswith("Too many wrong join codes from your address; try")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    other = requests.get(
        f"{hub}/NOSUCHCODE", headers={"X-Forwarded-For": "198.51.100.8"}, timeout=30
    )
    assert other.status_code == 404
    assert requests.get(f"{hub}/{event.code}", headers=school, timeout=30).status_code == 200


def test_the_login_page_offers_joining_and_no_one_signs_in_as_a_participant(site):
    login = requests.get(f"{site['hub'].url}/hub/login", timeout=30)
    assert 'href="/hub/join">Join a workshop with a code</a>' in login.text

    user = UserSession(site["hub"].url, "ws-x")
    reply = user.login(SHARED_PASSWORD)

    assert reply.status_code == 400
    assert "The username &#39;ws-x&#39; is reserved for KioskHub or the system" in reply.text
    assert site["admin"].api("/users/ws-x").status_code == 404
