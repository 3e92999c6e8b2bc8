"""Pre-warming on a real hub: the ``workshop-schedule`` service has the hub start the servers
of an event's first seats before anyone joins; the first participant to join lands on a
running server, seats past ``prewarm_seats`` are not made, an event whose environment
cannot launch gets none, no one but the schedule may ask for it, and expiry removes the
seats no one took.
"""

from __future__ import annotations

import time

import pytest
import requests

from kioskhub.hub import workshop_store as store
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import wait_until
from tests.support.hub_process import remove_site_folder, start_hub, write_site_config
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration

EVERY = 5
ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
SEATS = ["ws-warm23-001", "ws-warm23-002"]


@pytest.fixture(scope="module")
def site():
    folder = open_folder("workshop-prewarm")
    (folder / "data").mkdir()
    config = write_site_config(
        folder,
        auth={"shared_password": SHARED_PASSWORD, "admin_password": ADMIN_PASSWORD},
        workshops={
            "enabled": True,
            "teacher_groups": ["teachers"],
            "schedule_every": EVERY,
            "prewarm_seats": 2,
        },
        groups={"teachers": ["tess"]},
    )
    hub = start_hub(config, folder / "hub.log")
    admin = signed_in(hub.url, "admin", ADMIN_PASSWORD)
    yield {
        "hub": hub,
        "folder": folder,
        "path": store.database(folder / "state"),
        "token": admin.request_token(),
    }
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def new_event(site, event_id: str, **changes) -> store.Event:
    now = time.time()
    values = dict(
        event_id=event_id,
        title="Warm start",
        teacher="tess",
        environment="default",
        profile="small",
        materials_repo="",
        materials_ref="main",
        seats=5,
        start=now - 60,
        end=now + 7200,
        grace_seconds=0.0,
        code=store.new_code(),
        created=now - 120,
    )
    event = store.Event(**(values | changes))
    store.create_event(site["path"], event)
    return event


def server_of(site, username: str) -> dict | None:
    reply = site["hub"].api(f"/users/{username}", site["token"])
    if reply.status_code == 404:
        return None
    return reply.json()["servers"].get("")


def running(site, username: str) -> bool:
    server = server_of(site, username)
    return bool(server and server.get("ready"))


def join(site, event: store.Event, name: str) -> requests.Response:
    session = requests.Session()
    url = f"{site['hub'].url}/hub/join/{event.code}"
    session.get(url, timeout=30)
    return session.post(
        url,
        data={"display_name": name, "_xsrf": session.cookies.get("_xsrf") or ""},
        allow_redirects=False,
        timeout=120,
    )


def test_the_first_participants_find_their_servers_running(site):
    event = new_event(site, "warm23")
    hub, token = site["hub"], site["token"]

    wait_until(
        lambda: all(running(site, name) for name in SEATS),
        EVERY * 4 + 90,
        f"the seats' servers were not pre-warmed:\n{hub.log_text()[-3000:]}",
    )
    for name in SEATS:
        user = hub.api(f"/users/{name}", token).json()
        assert user["groups"] == ["workshop-warm23"]
        assert user["servers"][""]["user_options"] == {
            "environment": "default",
            "profile": "small",
        }
    tess = signed_in(hub.url, "tess", SHARED_PASSWORD)
    tess.request_token()
    page = tess.http.get(f"{hub.url}/hub/workshops/warm23", timeout=30)
    assert 'id="kh-workshop-prewarmed">Pre-warmed: 2 of 2 servers ready' in page.text
    # Seats past prewarm_seats are not made ahead.
    assert server_of(site, "ws-warm23-003") is None
    assert hub.api("/users/ws-warm23-003", token).status_code == 404

    joined = join(site, event, "Ada")

    # Straight to the running server's materials link, not to the spawn-pending page.
    assert joined.status_code == 302, joined.text[-2000:]
    assert joined.headers["Location"].startswith("/user/ws-warm23-001/git-pull?")
    (ada,) = store.participants(site["path"], "warm23")
    assert (ada.username, ada.display_name) == ("ws-warm23-001", "Ada")

    model = hub.api("/workshops/warm23", tess.token).json()
    assert model["prewarmed"] == {"seats": 1, "running": 1}
    assert [p["username"] for p in model["participants"]] == ["ws-warm23-001"]
    second = join(site, event, "Bo")
    assert second.headers["Location"].startswith("/user/ws-warm23-002/git-pull?")
    third = join(site, event, "Cy")
    assert third.headers["Location"].startswith("/hub/spawn-pending/ws-warm23-003?")


def test_an_event_whose_environment_cannot_launch_gets_no_servers(site):
    new_event(site, "cold23", environment="no-such-environment")

    wait_until(
        lambda: (
            "Workshop cold23 starts soon but the environment 'no-such-environment'"
            in site["hub"].log_text()
        ),
        EVERY * 4 + 30,
        f"no warning about the environment:\n{site['hub'].log_text()[-3000:]}",
    )
    time.sleep(EVERY)
    assert site["hub"].api("/users/ws-cold23-001", site["token"]).status_code == 404


def test_only_the_schedule_may_ask_the_hub_to_prewarm(site):
    new_event(site, "deny23", start=time.time() + 3600, end=time.time() + 7200)
    hub = site["hub"]
    tess = signed_in(hub.url, "tess", SHARED_PASSWORD)
    tess.request_token()

    for token in (site["token"], tess.token):
        reply = hub.api("/workshops/deny23/prewarm", token, "POST", json={})
        assert reply.status_code == 403, reply.text
        assert reply.json()["message"] == "only the workshop schedule pre-warms events"
    assert hub.api("/users/ws-deny23-001", site["token"]).status_code == 404


def test_expiry_removes_the_seats_no_one_took(site):
    event = new_event(site, "gone23", seats=3)
    wait_until(
        lambda: running(site, "ws-gone23-002"),
        EVERY * 4 + 90,
        f"the seats' servers were not pre-warmed:\n{site['hub'].log_text()[-3000:]}",
    )
    assert join(site, event, "Ada").status_code == 302

    store.update_event(site["path"], "gone23", start=time.time() - 7200, end=time.time() - 60)
    wait_until(
        lambda: store.get_event(site["path"], "gone23").expired is not None,
        EVERY * 6 + 90,
        f"the event did not expire:\n{site['hub'].log_text()[-3000:]}",
    )

    for name in ("ws-gone23-001", "ws-gone23-002"):
        assert site["hub"].api(f"/users/{name}", site["token"]).status_code == 404
        assert not (site["folder"] / "homes" / name).exists()
