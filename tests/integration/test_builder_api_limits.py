"""The builder service's limits through a real hub: body size, and builds queued per user.

Attack: one user registers environment after environment to fill the build queue, or posts
a body far over what any request needs. Both are refused with a message that says what to do.
"""

from __future__ import annotations

import shutil

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import open_folder
from tests.integration.test_builder_environments import Env, make_repository, start_builder_hub
from tests.support.hub_process import free_port, write_site_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site():
    folder = open_folder("builder-limits")
    write_sample_data(folder / "data")
    repo = make_repository(folder, folder / "state" / "secrets.json")
    config = write_site_config(
        folder,
        builder={
            "enabled": True,
            "port": free_port(),
            "allow_local_paths": True,
            "max_queued_builds_per_user": 2,
            "max_request_bytes": 4096,
        },
    )
    hub = start_builder_hub(config, folder / "hub.log")
    yield {"hub": hub, "repo": repo}
    hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_a_body_over_the_limit_is_refused_with_413(site):
    lou = Env(site["hub"].url, "lou")

    reply = lou.call("POST", "/environments", json={"name": "big", "description": "x" * 10_000})

    assert reply.status_code == 413
    assert reply.json()["message"] == "the request body is larger than 4096 bytes; send less"
    names = [e["name"] for e in lou.call("GET", "/environments").json()["environments"]]
    assert "big" not in names


def test_one_user_cannot_queue_more_than_the_limit(site):
    max_ = Env(site["hub"].url, "max")
    repository = str(site["repo"])
    ids = []
    try:
        for name in ("one", "two"):
            reply = max_.call(
                "POST", "/environments", json={"name": name, "repository": repository}
            )
            assert reply.status_code == 201, reply.text
            ids.append((max_, reply.json()["id"]))

        refused = max_.call(
            "POST", "/environments", json={"name": "three", "repository": repository}
        )
        again = max_.call("POST", f"/environments/{ids[0][1]}/rebuild", json={})

        assert refused.status_code == 429
        assert refused.json()["message"] == (
            "you already have 2 builds queued or running; wait for one to finish "
            "(at most 2 at once)"
        )
        assert again.status_code == 429
        otto = Env(site["hub"].url, "otto")
        other = otto.call("POST", "/environments", json={"name": "three", "repository": repository})
        assert other.status_code == 201, "the limit is per user"
        ids.append((otto, other.json()["id"]))
    finally:
        for owner, environment_id in ids:
            owner.call("POST", f"/environments/{environment_id}/cancel")
