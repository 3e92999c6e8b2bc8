"""A workshop event on an environment built from the teacher's repository, on a real hub with
the builder service, as root.

Tess (a teacher) builds two environments from her course repository (named with markup,
which the form shows escaped). One that only she,
or only her group, may launch is refused for an event (400, saying to share it with
everyone), on the API, the page and a change; once an admin shares one with everyone, the
event is made on it, and a participant who joins through the link gets a running server
launched from it (the spawner accepts the choice for an account in no group but the
event's).
"""

from __future__ import annotations

import shutil

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_builder_environments import Env, git, start_builder_hub
from tests.integration.test_dask_gateway import wait_until
from tests.integration.test_workshop_teacher import event_fields, page_form
from tests.support.hub_process import free_port, write_site_config
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
HOSTILE = '<script>alert("course")</script>'
SHARE = (
    "share it with everyone (visibility 'site', which a site admin sets on the Environments page)"
)


def refusal(name: str) -> str:
    return (
        f"{name!r} is launched only by you or your groups, not by the event's participants "
        f"(they belong to no group but the event's): {SHARE}, or choose one of default"
    )


@pytest.fixture(scope="module")
def site():
    folder = open_folder("workshop-environments")
    write_sample_data(folder / "data")
    repo = folder / "course-repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "requirements.txt").write_text("# nothing beyond the server\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "The course environment")
    config = write_site_config(
        folder,
        auth={"admin_password": ADMIN_PASSWORD},
        builder={"enabled": True, "port": free_port(), "allow_local_paths": True},
        groups={"teachers": ["tess"]},
        workshops={"enabled": True, "teacher_groups": ["teachers"]},
    )
    hub = start_builder_hub(config, folder / "hub.log")
    try:
        yield {"hub": hub, "repo": repo}
    finally:
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)


def built(builder: Env, name: str, repo) -> int:
    body = {"name": name, "repository": str(repo), "display_name": HOSTILE}
    reply = builder.call("POST", "/environments", json=body)
    assert reply.status_code == 201, reply.text
    events = builder.follow(reply.json()["id"])
    assert events[-1]["status"] == "ready", events[-3:]
    return reply.json()["id"]


def test_an_event_runs_on_a_catalog_environment_only_once_shared_with_everyone(site):
    url = site["hub"].url
    tess_builds, admin_builds = Env(url, "tess"), Env(url, "admin", ADMIN_PASSWORD)
    course = built(tess_builds, "course", site["repo"])
    draft = built(tess_builds, "draft", site["repo"])
    shared_with_group = tess_builds.call(
        "PUT", f"/environments/{draft}/visibility", json={"visibility": "group:teachers"}
    )
    assert shared_with_group.status_code == 200, shared_with_group.text
    tess = signed_in(url, "tess", SHARED_PASSWORD)

    # Only tess may launch "course", only her group "draft": participants could not.
    for name in ("tess.course", "tess.draft"):
        refused = tess.api("/workshops", "POST", json={**event_fields(), "environment": name})
        assert refused.status_code == 400, refused.text
        assert refused.json()["problems"] == {"environment": refusal(name)}
    form = tess.http.get(f"{url}/hub/workshops", timeout=30).text
    assert 'value="default"' in form and 'value="tess.course"' not in form
    on_page = page_form(tess, "workshops", {**event_fields(), "environment": "tess.draft"})
    assert on_page.status_code == 400 and "share it with everyone" in on_page.text

    assert (
        tess_builds.call(
            "PUT", f"/environments/{course}/visibility", json={"visibility": "site"}
        ).status_code
        == 403
    ), "a teacher cannot share with everyone herself"
    shared = admin_builds.call(
        "PUT", f"/environments/{course}/visibility", json={"visibility": "site"}
    )
    assert shared.json()["visibility"] == "site", shared.text

    form = tess.http.get(f"{url}/hub/workshops", timeout=30).text
    assert 'value="tess.course"' in form and 'value="tess.draft"' not in form
    assert HOSTILE not in form and "&lt;script&gt;alert(" in form, "its name is escaped"
    made = tess.api("/workshops", "POST", json={**event_fields(), "environment": "tess.course"})
    assert made.status_code == 201, made.text
    event = made.json()
    assert event["environment"] == "tess.course"
    changed = tess.api(
        f"/workshops/{event['event_id']}", "PATCH", json={"environment": "tess.draft"}
    )
    assert changed.status_code == 400
    assert changed.json()["problems"] == {
        "environment": refusal("tess.draft").replace("default", "default, tess.course")
    }
    assert tess.api(f"/workshops/{event['event_id']}", "PATCH", json={"seats": 4}).ok

    # A participant joins through the link; the spawner accepts the event's environment.
    joining = requests.Session()
    join_url = event["join_url"]
    joining.get(join_url, timeout=30)
    joined = joining.post(
        join_url,
        data={"display_name": "Ana", "_xsrf": joining.cookies.get("_xsrf") or ""},
        allow_redirects=False,
        timeout=60,
    )
    assert joined.status_code == 302, joined.text[-2000:]
    participant = f"ws-{event['event_id']}-001"
    admin = signed_in(url, "admin", ADMIN_PASSWORD)

    def server() -> dict:
        return admin.api(f"/users/{participant}").json()["servers"].get("", {})

    wait_until(lambda: server().get("ready"), 180, f"{participant}'s server did not start")
    assert server()["user_options"] == {"environment": "tess.course", "profile": "small"}
    assert admin.api(f"/users/{participant}").json()["groups"] == [event["group"]]
