"""Quotas with a real hub: spawns over a group's cores or a spent budget are refused from the
form and the REST API before anything starts, with a message naming the quota, what uses it
and when a budget renews; refusals are counted as such, never as failed spawns."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from html import unescape

import psutil
import pytest
import requests
import yaml

from kioskhub.hub.metrics_access import METRICS_TOKEN_FILE
from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner import usage_store
from kioskhub.spawner.quota_rules import period_end, period_start
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import remove_test_site, start_hub, write_site_config
from tests.support.user_session import signed_in
from tests.unit.test_usage_accounting import record

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-password-for-the-quotas-test"
QUOTAS = {
    "groups": {"physics": {"cores": 1}},
    "users": {"cleo": {"budgets": [{"core_hours": 10, "period": "month"}]}},
}


@pytest.fixture(scope="module")
def site():
    folder = open_folder("quotas")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        auth={"shared_password": SHARED_PASSWORD, "admin_password": ADMIN_PASSWORD},
        groups={"physics": ["ada", "bob", "carl", "admin"]},
        spawner={"start_timeout": 30},
        quotas=QUOTAS,
    )
    found = {"hub": start_hub(config, folder / "hub.log"), "folder": folder, "config": config}
    found["store"] = folder / "state" / "usage.sqlite"
    try:
        yield found
    finally:
        remove_test_site(found["hub"], folder)


@pytest.fixture(scope="module")
def ada_running(site):
    """ada (physics) runs a server of 1 core: the group's whole quota of cores."""
    ada = signed_in(site["hub"].url, "ada", SHARED_PASSWORD)
    assert ada.spawn()[-1].get("ready"), "ada's server did not start"
    return ada


def processes_of(account: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["username"]) if p.info["username"] == account]


def metric(site, name: str, **labels) -> float:
    token = (site["folder"] / "state" / METRICS_TOKEN_FILE).read_text().strip()
    text = requests.get(
        f"{site['hub'].url}/hub/metrics", headers={"Authorization": f"token {token}"}, timeout=30
    ).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.split()[-1])
    return 0.0


GROUP_REFUSAL = (
    "Starting your server would exceed a quota: the group physics may use 1 core at once "
    "(quotas.groups.physics.cores); in use now: 1 core by 1 other member of physics; this "
    "asks for 1 core."
)


def test_a_spawn_from_the_form_over_the_groups_cores_shows_the_quota(site, ada_running):
    bob = signed_in(site["hub"].url, "bob", SHARED_PASSWORD)
    refused = metric(site, "kioskhub_spawn_refusals_total", backend="local", reason="quota")
    failed = metric(
        site, "kioskhub_spawns_total", backend="local", profile="small", result="failure"
    )

    form = bob.http.get(f"{site['hub'].url}/hub/spawn").text
    assert "Your quota" not in form, "bob has no limits of his own"
    assert "the group physics: 1 of 1 core in use." in unescape(form)

    page = bob.http.post(
        f"{site['hub'].url}/hub/spawn",
        data={"environment": "default", "profile": "small", "_xsrf": bob.http.cookies["_xsrf"]},
    )

    shown = re.sub(r"\s+", " ", unescape(page.text))
    assert GROUP_REFUSAL in shown, shown[-3000:]
    assert 'name="profile"' in page.text, "the form is shown again to choose anew"
    assert bob.api("/users/bob").json()["servers"] == {}
    assert processes_of("kh-bob") == []
    assert metric(site, "kioskhub_spawn_refusals_total", backend="local", reason="quota") == (
        refused + 1
    )
    assert (
        metric(site, "kioskhub_spawns_total", backend="local", profile="small", result="failure")
        == failed
    ), "a refusal was counted as a failed spawn"


def test_a_spawn_from_the_api_over_the_groups_cores_is_a_403_with_the_message(site, ada_running):
    carl = signed_in(site["hub"].url, "carl", SHARED_PASSWORD)

    reply = carl.api("/users/carl/server", "POST", json={})

    assert reply.status_code == 403, reply.text
    assert reply.json()["message"].startswith(GROUP_REFUSAL)
    assert carl.api("/users/carl").json()["servers"] == {}
    assert processes_of("kh-carl") == []
    held = [r for r in usage_store.records(site["store"]) if r.end is None]
    assert [r.username for r in held] == ["ada"], "a refused spawn holds a record"


def test_an_admin_is_not_exempt_unless_the_site_says_so(site, ada_running):
    admin = signed_in(site["hub"].url, "admin", ADMIN_PASSWORD)

    reply = admin.api("/users/admin/server", "POST", json={})

    assert reply.status_code == 403, reply.text
    assert "(quotas.groups.physics.cores)" in reply.json()["message"]


def test_a_spent_budget_refuses_the_spawn_and_says_when_it_renews(site):
    now = time.time()
    spent = record(
        record_id="spent",
        username="cleo",
        groups="",
        cpu_cores=100_000.0,
        start=max(period_start("month", now), now - 3600),
        last_seen=now - 1,
        end=now - 1,
    )
    usage_store.open_record(site["store"], spent)
    cleo = signed_in(site["hub"].url, "cleo", SHARED_PASSWORD)
    form = unescape(cleo.http.get(f"{site['hub'].url}/hub/spawn").text)
    assert re.search(r"Your quota: [0-9.]+ of 10 core-hours this month in use\.", form)

    reply = cleo.api("/users/cleo/server", "POST", json={})

    renews = datetime.fromtimestamp(period_end("month", now), UTC)
    assert reply.status_code == 403, reply.text
    message = reply.json()["message"]
    assert message.startswith(
        "Starting your server would exceed a budget: your budget of 10 core-hours per month "
        "(quotas.users.cleo.budgets[0]) is spent, "
    ), message
    assert f"It renews on {renews:%Y-%m-%d} 00:00 UTC." in message
    assert processes_of("kh-cleo") == []


def test_the_running_server_is_recorded_once_and_its_stop_frees_the_quota(site, ada_running):
    (held,) = [r for r in usage_store.records(site["store"]) if r.username == "ada"]
    assert held.end is None and held.cpu_cores == 1
    ada_running.stop_server()
    bob = signed_in(site["hub"].url, "bob", SHARED_PASSWORD)
    assert bob.spawn()[-1].get("ready"), "bob's start was refused after ada's server stopped"
    bob.stop_server()
    (ran,) = [r for r in usage_store.records(site["store"]) if r.username == "bob"]
    assert ran.end is not None and ran.start <= ran.end


def test_with_admins_exempt_an_admin_starts_past_a_full_group_and_others_do_not(site):
    config = yaml.safe_load(site["config"].read_text())
    config["quotas"]["admins_exempt"] = True
    site["config"].write_text(yaml.safe_dump(config))
    assert site["hub"].stop() == 0
    site["hub"] = start_hub(site["config"], site["folder"] / "hub.log")
    now = time.time()
    running = record(record_id="bob's", username="bob", groups="physics", cpu_cores=1.0)
    usage_store.open_record(site["store"], replace(running, start=now, last_seen=now, end=None))
    admin = signed_in(site["hub"].url, "admin", ADMIN_PASSWORD)
    carl = signed_in(site["hub"].url, "carl", SHARED_PASSWORD)

    assert carl.api("/users/carl/server", "POST", json={}).status_code == 403
    assert admin.spawn()[-1].get("ready"), "the admin was refused with admins_exempt"
    admin.stop_server()
