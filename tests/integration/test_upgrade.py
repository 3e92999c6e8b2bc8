"""Upgrading a site: the new hub re-adopts the state folder and running servers of the last release.

A site admin stops the old hub (servers keep running: ``hub.cleanup_servers: false``),
installs the new release and runs `kioskhub up` on the same config file and state folder.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner.cgroups import ServerCgroup
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import remove_site_folder, start_hub, write_site_config
from tests.support.previous_release import ReleaseUnavailable, check_out, install
from tests.support.user_session import UserSession, servers_once_checked, signed_in

pytestmark = pytest.mark.integration

PREVIOUS_RELEASE = "f180d9c"
"""The release before the move to the ``kioskhub`` namespace (top-level ``hub``, ``spawner``)."""

NOTE = "written before the upgrade\n"


@pytest.fixture
def upgrade_folder():
    folder = open_folder("upgrade")
    yield folder
    remove_site_folder(folder)


@pytest.fixture
def previous_release(upgrade_folder) -> tuple[Path, Path]:
    """The previous release's tree and the bin folder of its venv."""
    try:
        tree = check_out(PREVIOUS_RELEASE, upgrade_folder / "release")
        return tree, install(tree, upgrade_folder / "release-venv")
    except ReleaseUnavailable as error:
        pytest.fail(str(error))


def test_new_hub_readopts_the_state_and_running_servers_of_the_previous_release(
    upgrade_folder, previous_release
):
    old_tree, old_bin = previous_release
    site = upgrade_folder / "site"
    site.mkdir(mode=0o755)
    write_sample_data(site / "data")
    config = write_site_config(site, hub={"cleanup_servers": False})

    cgroup_dirs: list[str] = []
    hub = start_hub(config, site / "hub.log", venv_bin=old_bin, cwd=old_tree)
    try:
        ada = signed_in(hub.url, "ada", SHARED_PASSWORD)
        assert ada.spawn()[-1].get("ready"), hub.log_text()
        before = _server_state(site, "ada")
        assert before.get("version") == 1 and "kioskhub" not in before, before
        pid = before["pid"]
        cgroup_dirs.extend(before["limits"]["dirs"])
        started = psutil.Process(pid).create_time()
        assert cgroup_dirs and all(_holds(d, pid) for d in cgroup_dirs), before
        assert ada.server("/api/status").status_code == 200
        summary = _home_page_summary(ada)
        assert summary, "the previous release's home page shows no server"
        note = ada.server(
            "/api/contents/upgrade-note.txt",
            "PUT",
            json={"type": "file", "format": "text", "content": NOTE},
        )
        assert note.status_code in (200, 201), note.text
        admin_password = json.loads((site / "state" / "secrets.json").read_text())["admin_password"]
        assert hub.stop(signal.SIGTERM) == 0, hub.log_text()
        assert psutil.Process(pid).create_time() == started, "the server did not outlive its hub"

        hub = start_hub(config, site / "hub.log")
        admin = signed_in(hub.url, "admin", admin_password)
        servers = servers_once_checked(admin, "ada")
        assert servers.get("", {}).get("ready"), (servers, hub.log_text())
        assert ada.server("/api/status").status_code == 200
        assert _home_page_summary(ada) == summary
        assert ada.execute("1+1")["result"] == "2"
        assert psutil.Process(pid).create_time() == started, "a new server replaced the old one"
        assert _server_state(site, "ada")["pid"] == pid
        reply = ada.server("/api/contents/upgrade-note.txt", params={"content": "1"})
        assert reply.status_code == 200 and reply.json()["content"] == NOTE, reply.text

        ada.stop_server()
        assert not _alive(pid, started), f"pid {pid} still runs after the new hub stopped it"
        assert [d for d in cgroup_dirs if os.path.exists(d)] == [], hub.log_text()

        bea = signed_in(hub.url, "bea", SHARED_PASSWORD)
        assert bea.spawn()[-1].get("ready"), hub.log_text()
        cgroup_dirs.extend(_server_state(site, "bea")["kioskhub"]["launch"]["limits"]["dirs"])
        assert bea.execute("1+1")["result"] == "2"
        bea.stop_server()
    finally:
        if hub.process.poll() is None:
            hub.stop()
        ServerCgroup(dirs=tuple(cgroup_dirs)).remove()  # what a failed check left behind


def _server_state(site: Path, name: str) -> dict:
    """The spawner state the hub saved for ``name``'s default server."""
    with sqlite3.connect(site / "state" / "jupyterhub.sqlite") as db:
        row = db.execute(
            "SELECT spawners.state FROM spawners JOIN users ON users.id = spawners.user_id "
            "WHERE users.name = ? AND spawners.name = ''",
            (name,),
        ).fetchone()
    assert row and row[0], f"no saved state for {name}'s server"
    return json.loads(row[0])


def _home_page_summary(user: UserSession) -> str:
    """What the hub's home page says the user's default server runs ('Python 3 · Small')."""
    page = user.http.get(f"{user.hub_url}/hub/home", timeout=30)
    page.raise_for_status()
    found = re.search(r'<td class="kh-choice-summary">([^<]*)</td>', page.content.decode())
    return html.unescape(found.group(1)).strip() if found else ""


def _holds(cgroup_dir: str, pid: int) -> bool:
    with open(os.path.join(cgroup_dir, "cgroup.procs")) as procs:
        return str(pid) in procs.read().split()


def _alive(pid: int, started: float, grace: float = 10) -> bool:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() != started or proc.status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            return False
        time.sleep(0.3)
    return True
