"""The re-execution queue in the gallery's database: one run per version at a time, the
oldest first, a run the service left running queued again, badges for the list."""

from __future__ import annotations

import pytest

from kioskhub.hub.gallery import reexec_store, store
from kioskhub.hub.gallery.reexec_store import AlreadyUnderWay


@pytest.fixture
def database(tmp_path):
    path = store.database(tmp_path)
    store.open_database(path)
    reexec_store.create_table(path)
    with store.transaction(path) as db:
        db.execute(
            "INSERT INTO entries VALUES (1, 'ada', 't', 'a', '[]', 'site', 'default', 2, 0, 0)"
        )
        for number in (1, 2):
            db.execute(
                "INSERT INTO versions VALUES (1, ?, 'ada', 0, 't', 'a', '{}', '{}', '{}')",
                (number,),
            )
    return path


def test_runs_are_taken_oldest_first_and_one_per_version(database):
    first = reexec_store.request(database, 1, 2, {"relative": 0.01})
    assert first["state"] == "queued" and first["tolerance"] == {"relative": 0.01}
    reexec_store.request(database, 1, 1, None)
    with pytest.raises(AlreadyUnderWay) as refused:
        reexec_store.request(database, 1, 2, None)
    assert str(refused.value) == "version 2 is already queued for re-execution"
    assert refused.value.status == 409
    taken = reexec_store.next_queued(database)
    assert (taken["number"], taken["state"]) == (2, "running")
    assert reexec_store.badges(database, [(1, 1), (1, 2)]) == {(1, 1): "queued", (1, 2): "running"}


def test_a_finished_run_keeps_its_report_and_may_be_asked_again(database):
    reexec_store.request(database, 1, 1, None)
    reexec_store.next_queued(database)
    cells = [{"index": 0, "cell": "a", "result": "same", "why": []}]
    reexec_store.finish(database, 1, 1, {"badge": "reproduced", "cells": cells, "problem": None})
    done = reexec_store.get(database, 1, 1)
    assert (done["state"], done["badge"], done["cells"]) == ("done", "reproduced", cells)
    assert reexec_store.badges(database, [(1, 1), (1, 2)]) == {(1, 1): "reproduced"}
    assert reexec_store.request(database, 1, 1, None)["state"] == "queued"


def test_a_run_the_service_left_running_is_queued_again(database):
    reexec_store.request(database, 1, 1, None)
    reexec_store.next_queued(database)
    reexec_store.create_table(database)
    assert reexec_store.get(database, 1, 1)["state"] == "queued"
    assert reexec_store.next_queued(database)["number"] == 1
    assert reexec_store.next_queued(database) is None
