"""One user cannot fill the build queue: at most ``max_queued_builds_per_user`` waiting."""

from __future__ import annotations

import pytest

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.builder_base import Artifact
from kioskhub.image_builder.catalog_db import open_catalog
from kioskhub.image_builder.catalog_store import (
    QueueLimit,
    check_queue_room,
    finish_ready,
)
from tests.unit.test_catalog_store import add

LIMIT = BuilderSettings().max_queued_builds_per_user


def test_the_limit_counts_queued_and_running_builds_per_owner(tmp_path):
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with catalog.session() as session:
        builds = []
        for number in range(LIMIT):
            check_queue_room(session, "ada", LIMIT)
            builds.append(add(session, "ada", f"env{number}")[1])

        with pytest.raises(QueueLimit) as refused:
            check_queue_room(session, "ada", LIMIT)
        assert str(refused.value) == (
            f"you already have {LIMIT} builds queued or running; wait for one to finish "
            f"(at most {LIMIT} at once)"
        )
        assert refused.value.status == 429
        with pytest.raises(QueueLimit, match=f"^ada already has {LIMIT} builds"):
            check_queue_room(session, "ada", LIMIT, asked_by="admin")
        check_queue_room(session, "bob", LIMIT)

        finish_ready(session, builds[0], Artifact("a" * 40, "h", venv_path="/envs/h"), "")
        check_queue_room(session, "ada", LIMIT)
    catalog.close()


def test_the_limit_is_in_the_builder_settings():
    assert LIMIT == 3
    assert BuilderSettings(max_queued_builds_per_user=1).max_queued_builds_per_user == 1
