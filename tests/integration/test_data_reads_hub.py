"""The data a notebook read, end to end: a hub's server (its user's system account, the
data bound at its mount path and in the home) records it, and the endpoint answers it."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import SHARED_PASSWORD
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
READS = (
    "import os, pathlib\n"
    "open(os.path.join(os.environ['KIOSKHUB_DATA_DIR'], 'beamline-sample.csv')).read()\n"
    "pathlib.Path('~/data/beamline-sample.csv').expanduser().read_bytes()\n"
    "pathlib.Path('~/notes.txt').expanduser().write_text('mine')\n"
    "open(os.path.expanduser('~/notes.txt')).read()\n"
    "print(os.environ['KIOSKHUB_DATA_MOUNTS'])\n"
)


def test_a_notebooks_reads_from_the_data_mount_are_recorded_and_answered(running_hub, site_folder):
    ada = UserSession(running_hub.url, "ada")
    ada.login(SHARED_PASSWORD)
    ada.request_token()
    assert ada.spawn()[-1].get("ready")
    ada.server("/api/contents/reads.ipynb", "PUT", json={"type": "notebook", "content": NOTEBOOK})
    session = ada.server(
        "/api/sessions",
        "POST",
        json={"path": "reads.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
    ).json()
    reply = ada._execute_in(session["kernel"]["id"], READS, timeout=60)
    assert reply["error"] is None, reply
    mounts = json.loads(reply["stdout"])
    assert [m["name"] for m in mounts] == ["data"]

    answer = ada.server("/kioskhub/data-reads?path=reads.ipynb")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mounts"] == mounts
    sample = site_folder / "data" / "beamline-sample.csv"
    [read] = body["files"]  # one file, though read at the mount path and in the home
    assert read["mount"] == "data" and read["relative_path"] == "beamline-sample.csv"
    assert read["size"] == sample.stat().st_size
    assert read["sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()

    grace = UserSession(running_hub.url, "grace")
    grace.login(SHARED_PASSWORD)
    grace.request_token()
    grace.username = "ada"  # grace asks ada's server with her own token
    refused = grace.server("/kioskhub/data-reads?path=reads.ipynb")
    assert refused.status_code == 403, refused.text
